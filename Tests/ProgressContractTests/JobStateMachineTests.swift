import ProgressContract
import Testing

@Suite("Job state machine")
struct JobStateMachineTests {
    @Test func allowedTransitions() {
        #expect(JobState.pending.canTransition(to: .running))
        #expect(JobState.running.canTransition(to: .pausing))
        #expect(JobState.pausing.canTransition(to: .paused))
        #expect(JobState.paused.canTransition(to: .running))
        #expect(JobState.running.canTransition(to: .completing))
        #expect(JobState.completing.canTransition(to: .completed))
        #expect(JobState.canceling.canTransition(to: .canceled))
    }

    @Test func forbiddenTransitions() {
        for terminal in [JobState.completed, .canceled, .failed] {
            for next in JobState.allCases where next != terminal {
                #expect(!terminal.canTransition(to: next), "\(terminal) → \(next)")
            }
        }
        #expect(!JobState.pending.canTransition(to: .completed))
        #expect(!JobState.completing.canTransition(to: .running))
        #expect(!JobState.canceling.canTransition(to: .running))
    }
}

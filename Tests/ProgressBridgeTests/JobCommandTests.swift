import ProgressContract
import Testing

@testable import ProgressBridge

@Suite("Job commands: which states take which command; ids stable under an Idempotency-Key; bounded memory")
struct JobCommandTests {
    @Test func eachCommandIsRefusedInTheStatesThatCannotTakeIt() {
        #expect(JobCommandKind.pause.refusal(in: .running) == nil && JobCommandKind.pause.refusal(in: .pending) != nil)
        #expect(JobCommandKind.cancel.refusal(in: .pending) == nil && JobCommandKind.cancel.refusal(in: .completing) != nil)
        #expect(JobCommandKind.pause.refusal(in: .paused) != nil && JobCommandKind.pause.refusal(in: .pausing) != nil)
        #expect(JobCommandKind.resume.refusal(in: .paused) == nil && JobCommandKind.resume.refusal(in: .pausing) == nil)
        #expect(JobCommandKind.resume.refusal(in: .running) != nil)
        #expect(JobCommandKind.cancel.refusal(in: .running) == nil && JobCommandKind.cancel.refusal(in: .canceling) != nil)
        for terminal in [JobState.completed, .failed, .canceled] {
            for kind in [JobCommandKind.pause, .resume, .cancel] { #expect(kind.refusal(in: terminal)?.contains(terminal.rawValue) == true) }
        }
        #expect(JobCommandKind.pause.refusal(in: nil) == nil, "a job whose state is not known yet can take any command")
    }

    @Test func idsAreDerivedFromTheRequesterAndTheKeyOrRandom() {
        let a = JobCommand.commandId(subject: "alice", idempotencyKey: "k1", kind: .pause, jobId: "job_1")
        #expect(a == JobCommand.commandId(subject: "alice", idempotencyKey: "k1", kind: .pause, jobId: "job_1"), "a retry anywhere: the same id")
        #expect(a != JobCommand.commandId(subject: "bob", idempotencyKey: "k1", kind: .pause, jobId: "job_1"))
        #expect(a != JobCommand.commandId(subject: "alice", idempotencyKey: "k1", kind: .cancel, jobId: "job_1"))
        #expect(a != JobCommand.commandId(subject: "alicek", idempotencyKey: "1", kind: .pause, jobId: "job_1"), "fields never run together")
        #expect(JobCommand.commandId(subject: nil, idempotencyKey: nil, kind: .pause, jobId: "job_1") != JobCommand.commandId(subject: nil, idempotencyKey: nil, kind: .pause, jobId: "job_1"))
        let job = JobCommand.newJobId(subject: "alice", idempotencyKey: "k1")
        #expect(job == JobCommand.newJobId(subject: "alice", idempotencyKey: "k1") && JobIdentifierCheck.isValid(job))
        #expect(a.hasPrefix("cmd_") && a.count == 36)
    }

    @Test func theIdempotencyMemoryIsBoundedInEntriesAndTime() {
        let cache = IdempotencyCache<Int>(capacity: 3, lifetimeMs: 1000)
        for i in 0..<5 { cache.remember("k\(i)", fingerprint: "f", answer: i, now: 0) }
        #expect(cache.count == 3 && cache.lookup("k0", now: 0) == nil && cache.lookup("k4", now: 0)?.answer == 4)
        cache.remember("k4", fingerprint: "other", answer: 99, now: 10)
        #expect(cache.lookup("k4", now: 10)?.answer == 4, "the first answer stays")
        #expect(cache.lookup("k4", now: 1001) == nil && cache.count == 0, "forgotten after its lifetime")
        #expect(IdempotencyKey.isValid("a-b_c.1") && !IdempotencyKey.isValid("") && !IdempotencyKey.isValid("has space") && !IdempotencyKey.isValid(String(repeating: "x", count: 129)))
    }
}

/// The contract's job id pattern, for checking generated ids.
private enum JobIdentifierCheck {
    static func isValid(_ id: String) -> Bool { id.range(of: "^job_[A-Za-z0-9_-]{1,120}$", options: .regularExpression) != nil }
}

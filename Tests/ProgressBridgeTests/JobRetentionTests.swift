import ProgressContract
import Testing

@testable import ProgressBridge

@Suite("Job retention: finished and abandoned jobs are forgotten, watched ones kept")
struct JobRetentionTests {
    func stateChange(_ jobId: String, to state: JobState, at ms: Int64) -> ProgressEvent {
        ProgressEvent(
            eventId: "\(jobId)-\(state.rawValue)", type: .jobStateChanged, jobId: jobId, occurredAt: ms, seq: nil,
            payload: .jobStateChanged(from: nil, to: state, reason: nil, job: nil))
    }

    @Test func eachKindOfJobHasItsOwnCutoff() {
        let metrics = BridgeMetrics()
        let store = JobStore(metrics: metrics)
        _ = store.apply(stateChange("job_done", to: .running, at: 1_000))
        _ = store.apply(stateChange("job_done", to: .completed, at: 2_000))
        _ = store.apply(stateChange("job_silent", to: .running, at: 1_000))
        let now = WallClock.nowMs()

        // Both changed just now: a cutoff in the past forgets nothing.
        #expect(store.evict(finishedBefore: now - 60_000, idleBefore: now - 60_000).isEmpty)
        // Finished jobs go at their cutoff; a running job waits for the (longer) idle one.
        #expect(store.evict(finishedBefore: now + 60_000, idleBefore: now - 60_000).map(\.jobId) == ["job_done"])
        #expect(store.aggregate("job_done") == nil && store.aggregate("job_silent") != nil)
        #expect(metrics.render().contains("progress_bridge_active_jobs 1"))
        #expect(store.evict(finishedBefore: now + 60_000, idleBefore: now + 60_000).map(\.jobId) == ["job_silent"])
        #expect(store.aggregate("job_silent") == nil)
        #expect(metrics.render().contains("progress_bridge_tracked_jobs 0"))
        #expect(metrics.render().contains("progress_bridge_active_jobs 0"), "an abandoned job no longer counts as active")
    }

    @Test func aWatchedJobIsKeptWhateverItsAge() {
        let metrics = BridgeMetrics()
        let store = JobStore(metrics: metrics)
        _ = store.apply(stateChange("job_watched", to: .running, at: 1_000))
        let outbox = Outbox(capacity: 8, metrics: metrics)
        store.subscribe(jobId: "job_watched", subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: nil, now: 0)
        let later = WallClock.nowMs() + 60_000
        #expect(store.evict(finishedBefore: later, idleBefore: later).isEmpty)
        #expect(store.aggregate("job_watched") != nil)
        store.unsubscribe(jobId: "job_watched", subscriber: ObjectIdentifier(outbox))
        #expect(store.evict(finishedBefore: later, idleBefore: later).map(\.jobId) == ["job_watched"], "once nobody watches, it goes")
    }
}

import Kafka
import ProgressContract
import Testing

@testable import ProgressBridge

@Suite("Job retention: on the partition's stream time; finished and abandoned jobs are forgotten, watched ones kept")
struct JobRetentionTests {
    let partition = TopicPartition(topic: "progress.events", partition: 0)


    /// A store forgetting finished jobs after 10 s and others after 60 s of stream time.
    func store(_ metrics: BridgeMetrics) -> JobStore {
        JobStore(limits: StoreLimits(finishedJobRetentionMs: 10_000, idleJobRetentionMs: 60_000), metrics: metrics)
    }

    @Test func eachKindOfJobHasItsOwnCutoffInStreamTime() {
        let metrics = BridgeMetrics()
        let store = store(metrics)
        var offset: Int64 = 0
        func apply(_ event: ProgressEvent) {
            _ = store.apply(event, at: EventOrigin(partition: partition, offset: offset))
            offset += 1
        }
        apply(stateChange("job_done", to: .running, at: 1_000))
        apply(stateChange("job_done", to: .completed, at: 2_000))
        apply(stateChange("job_silent", to: .running, at: 1_000))
        apply(stateChange("job_clock", to: .running, at: 11_000))
        // Wall-clock time does not matter; the stream is at 11 s: nothing is past its retention yet.
        #expect(store.evictExpired().isEmpty)
        apply(stateChange("job_clock", to: .running, at: 12_001))
        #expect(store.evictExpired().map(\.jobId) == ["job_done"], "finished at 2 s, the stream is at 12.001 s")
        #expect(store.aggregate("job_done") == nil && store.aggregate("job_silent") != nil)
        #expect(metrics.render().contains("progress_bridge_active_jobs 2"))
        // job_silent last changed when the stream was at 2 s (job_done's completion came first).
        apply(stateChange("job_clock", to: .running, at: 62_000))
        #expect(store.evictExpired().isEmpty)
        apply(stateChange("job_clock", to: .running, at: 62_001))
        #expect(store.evictExpired().map(\.jobId) == ["job_silent"])
        #expect(store.takeForgotten().map(\.jobId) == ["job_done", "job_silent"], "handed over for the state topic's tombstones")
        #expect(metrics.render().contains("progress_bridge_tracked_jobs 1"))
    }

    @Test func anEventPastTheRetentionStartsTheJobAfreshWhetherOrNotTheSweepRan() {
        // Two replicas, one of which swept and one of which did not, must end up with the same job.
        let stores = [store(BridgeMetrics()), store(BridgeMetrics())]
        for (index, store) in stores.enumerated() {
            _ = store.apply(stateChange("job_x", to: .running, at: 1_000), at: EventOrigin(partition: partition, offset: 0))
            _ = store.apply(stateChange("job_x", to: .completed, at: 2_000), at: EventOrigin(partition: partition, offset: 1))
            _ = store.apply(stateChange("job_other", to: .running, at: 20_000), at: EventOrigin(partition: partition, offset: 2))
            if index == 0 { store.evictExpired() }
            #expect(store.apply(stateChange("job_x", to: .running, at: 20_001), at: EventOrigin(partition: partition, offset: 3)) == .applied)
        }
        let aggregates = stores.map { $0.aggregate("job_x") }
        #expect(aggregates[0] != nil && aggregates[0]?.progress() == aggregates[1]?.progress())
        #expect(aggregates[0]?.state == .running, "a new incarnation, not a transition out of `completed`")
        #expect(stores.map { $0.takeForgotten().map(\.jobId) } == [["job_x"], ["job_x"]])
    }

    @Test func aWatchedJobIsKeptWhateverItsAge() {
        let metrics = BridgeMetrics()
        let store = store(metrics)
        _ = store.apply(stateChange("job_watched", to: .running, at: 1_000), at: EventOrigin(partition: partition, offset: 0))
        let outbox = Outbox(capacity: 8, metrics: metrics)
        store.subscribe(jobId: "job_watched", subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: nil, now: 0)
        _ = store.apply(stateChange("job_later", to: .running, at: 100_000), at: EventOrigin(partition: partition, offset: 1))
        #expect(store.evictExpired().isEmpty)
        #expect(store.aggregate("job_watched") != nil)
        store.unsubscribe(jobId: "job_watched", subscriber: ObjectIdentifier(outbox))
        #expect(store.evictExpired().map(\.jobId) == ["job_watched"], "once nobody watches, it goes")
    }
}

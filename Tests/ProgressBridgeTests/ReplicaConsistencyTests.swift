import JSONSchema
import Kafka
import ProgressAggregation
import ProgressContract
import SubscriberProtocol
import Testing

@testable import ProgressBridge

/// Several replicas read the same partitions and must say the same things: `seq` is the input offset + 1, a
/// replica restored from a checkpoint continues exactly like one that read everything, and a client moving
/// between replicas with `last_seq` misses nothing and sees nothing twice.
@Suite("Replica consistency")
struct ReplicaConsistencyTests {
    let partition = TopicPartition(topic: "progress.events", partition: 3)

    /// Events of one job at the given offsets of `partition` (other jobs' records lie between them).
    func stream(_ jobId: String, count: Int, offsets: (Int) -> Int64 = { Int64($0) }) -> [(ProgressEvent, EventOrigin)] {
        var e = StoreEvents(jobId)
        var events = [e.running()]
        for i in 1..<count { events.append(e.completed("v\(i % 7)", at: Int64(i) * 1000)) }
        return events.enumerated().map { ($1, EventOrigin(partition: partition, offset: offsets($0))) }
    }

    func subscribe(_ store: JobStore, _ jobId: String, lastSeq: Int64? = nil) -> Outbox {
        let outbox = Outbox(capacity: 10_000, metrics: BridgeMetrics())
        store.subscribe(jobId: jobId, subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: lastSeq, now: 42)
        return outbox
    }

    @Test func seqIsTheInputOffsetPlusOneAndGapsAreReplayed() async {
        let store = JobStore(metrics: BridgeMetrics())
        let events = stream("job_gaps", count: 5, offsets: { Int64($0) * 10 + 3 })
        for (event, origin) in events { #expect(store.apply(event, at: origin) == .applied) }
        let all = await drain(subscribe(store, "job_gaps", lastSeq: 0))
        #expect(all.map(\.type) == ["resume.ok", "job.state_changed", "video.completed", "video.completed", "video.completed", "video.completed"])
        #expect(all.dropFirst().map(\.seq) == [4, 14, 24, 34, 44])
        // A seq between two messages (the client saw 14; 15…23 were other jobs' offsets): exactly what followed.
        #expect(await drain(subscribe(store, "job_gaps", lastSeq: 14)).dropFirst().map(\.seq) == [24, 34, 44])
    }

    @Test func aReplicaRestoredFromACheckpointContinuesExactlyLikeOneThatReadEverything() async throws {
        let events = stream("job_same", count: 40)
        let reader = JobStore(metrics: BridgeMetrics())
        for (event, origin) in events[..<25] { _ = reader.apply(event, at: origin) }
        // The owner checkpoints after 25 events; a replica starting now restores that and reads on from an
        // earlier committed offset (20): the five events it reads again are already in the state.
        let checkpoint = try #require(reader.takeCheckpoint("job_same"))
        var restoredAggregate = checkpoint.header
        restoredAggregate.restore(videos: checkpoint.changedVideos, limits: AggregateLimits())
        let restored = JobStore(metrics: BridgeMetrics())
        restored.restore(restoredAggregate, seq: checkpoint.seq, partition: checkpoint.partition, changedAt: checkpoint.changedAt)
        #expect(checkpoint.seq == 25 && checkpoint.partition == partition)
        for (event, origin) in events[20..<25] { #expect(restored.apply(event, at: origin) == .duplicate) }

        let watchers = [subscribe(reader, "job_same"), subscribe(restored, "job_same")]
        for (event, origin) in events[25...] {
            _ = reader.apply(event, at: origin)
            _ = restored.apply(event, at: origin)
        }
        let seen = [await drain(watchers[0]), await drain(watchers[1])]
        #expect(seen[0].count == 1 + 15)
        #expect(seen[0].map(\.text) == seen[1].map(\.text), "the same snapshot and the same messages, byte for byte")
        #expect(reader.aggregate("job_same")?.progress() == restored.aggregate("job_same")?.progress())
        #expect(reader.aggregate("job_same")?.videos == restored.aggregate("job_same")?.videos)
    }

    @Test func aClientFromAReplicaFurtherAheadWaitsForWhatItHasNotSeen() async {
        let events = stream("job_lag", count: 10)
        let behind = JobStore(metrics: BridgeMetrics())
        for (event, origin) in events[..<6] { _ = behind.apply(event, at: origin) }
        behind.updateHighWatermarks([partition: 10])  // the records exist; this replica has not read them yet
        // The client saw seq 8 (offset 7) on a replica further ahead.
        let outbox = subscribe(behind, "job_lag", lastSeq: 8)
        for (event, origin) in events[6...] { _ = behind.apply(event, at: origin) }
        let seen = await drain(outbox)
        #expect(seen.map(\.type) == ["resume.ok", "video.completed", "video.completed"])
        #expect(seen.dropFirst().map(\.seq) == [9, 10], "nothing it had, nothing missing")
    }

    @Test func aLastSeqBeyondThePartitionsEndGetsASnapshot() async {
        let store = JobStore(metrics: BridgeMetrics())
        for (event, origin) in stream("job_far", count: 3) { _ = store.apply(event, at: origin) }
        store.updateHighWatermarks([partition: 3])
        let seen = await drain(subscribe(store, "job_far", lastSeq: 1_000))
        #expect(seen.map(\.type) == ["error", "job.snapshot"])
        #expect(decoded(seen[0])["data"]?["code"]?.stringValue == "resume_unavailable")
        #expect(seen[1].seq == 3)
    }

    @Test func aResumeOlderThanTheHistoryGetsASnapshot() async {
        let store = JobStore(limits: StoreLimits(historyPerJob: 3), metrics: BridgeMetrics())
        for (event, origin) in stream("job_old", count: 6, offsets: { Int64($0) * 2 }) { _ = store.apply(event, at: origin) }
        // History: seqs 7, 9, 11; seq 5 was dropped, so a client at 3 would miss it.
        #expect(await drain(subscribe(store, "job_old", lastSeq: 5)).dropFirst().map(\.seq) == [7, 9, 11])
        #expect(await drain(subscribe(store, "job_old", lastSeq: 3)).map(\.type) == ["error", "job.snapshot"])
    }

    @Test func aJobsEventsFromAnotherPartitionAreRefused() {
        let store = JobStore(metrics: BridgeMetrics())
        var e = StoreEvents("job_split")
        #expect(store.apply(e.running(), at: EventOrigin(partition: partition, offset: 0)) == .applied)
        let elsewhere = EventOrigin(partition: TopicPartition(topic: "progress.events", partition: 0), offset: 99)
        guard case .rejected(let rejection) = store.apply(e.completed("v1", at: 1), at: elsewhere) else {
            Issue.record("an event of the job from another partition was applied")
            return
        }
        #expect(rejection.reason == .partitionMismatch)
    }

    @Test func maxJobsIsSharedOutOverThePartitions() {
        let store = JobStore(limits: StoreLimits(maxJobs: 4), metrics: BridgeMetrics())
        store.setPartitionCount(2)
        let other = TopicPartition(topic: "progress.events", partition: 0)
        var outcomes: [ApplyOutcome] = []
        for i in 0..<3 {
            var e = StoreEvents("job_cap_\(i)")
            outcomes.append(store.apply(e.running(), at: EventOrigin(partition: partition, offset: Int64(i))))
        }
        #expect(outcomes[0] == .applied && outcomes[1] == .applied)
        guard case .rejected(let rejection) = outcomes[2], rejection.reason == .limitExceeded else {
            Issue.record("a third job in a partition with room for two was applied: \(outcomes[2])")
            return
        }
        var e = StoreEvents("job_cap_other")
        #expect(store.apply(e.running(), at: EventOrigin(partition: other, offset: 0)) == .applied, "the other partition has its own share")
    }
}

import Foundation
import Kafka
import Logging
import ProgressAggregation
import ProgressContract
import Testing

@testable import ProgressBridge

/// The state topic on librdkafka's mock cluster: jobs of any size checkpoint and restore.
@Suite("State changelog", .serialized)
struct StateChangelogTests {
    let logger = Logger(label: "test")

    /// Writes `store`'s dirty jobs to a fresh state topic and restores them into a new store.
    func roundTrip(_ store: JobStore, jobs: Set<String>, partitions: Int = 16) async throws -> (JobStore, seconds: Double) {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("progress.state", partitions: partitions)
        let producer = try KafkaProducer(
            configuration: .init(bootstrapServers: cluster.bootstrapServers, properties: KafkaProperties(["compression.type": "lz4"])), logger: logger)
        let changelog = StateChangelog(producer: producer, topic: "progress.state")
        let started = ContinuousClock.now
        try await changelog.write(jobs, from: store)
        let restored = JobStore(metrics: BridgeMetrics())
        let count = try await StateChangelog.restore(
            into: restored, bootstrapServers: cluster.bootstrapServers, topic: "progress.state", properties: .init(), limits: .init(), logger: logger
        ).jobs
        #expect(count == jobs.count)
        let elapsed = ContinuousClock.now - started
        return (restored, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    @Test func aJobOf100000VideosCheckpointsAndRestores() async throws {
        let store = JobStore(metrics: BridgeMetrics())
        var e = StoreEvents("job_huge")
        _ = store.apply(e.running())
        for i in 0..<100_000 { _ = store.apply(e.completed("video_\(i)", at: Int64(i), message: "s3://outputs/job_huge/video_\(i).mp4")) }
        let (restored, seconds) = try await roundTrip(store, jobs: ["job_huge"])
        let before = try #require(store.aggregate("job_huge"))
        let after = try #require(restored.aggregate("job_huge"))
        #expect(after.videos.count == 100_000)
        #expect(after.videos == before.videos)
        #expect(after.progress() == before.progress())
        print("100,000-video job: checkpoint + restore in \(String(format: "%.1f", seconds)) s")
    }

    @Test func manyMaximumSizeErrorMessagesCheckpointAndRestore() async throws {
        let store = JobStore(metrics: BridgeMetrics())
        var e = StoreEvents("job_errors")
        _ = store.apply(e.running())
        let message = String(repeating: "E", count: 4096)  // the schema's maximum
        for i in 0..<3_000 {
            let failure = e.make(
                .videoFailed(videoId: "v\(i)", error: ErrorInfo(code: "RENDER", message: message), retryable: true, attempt: 1, processingMs: nil),
                type: .videoFailed, at: Int64(i))
            _ = store.apply(failure)
        }
        let (restored, _) = try await roundTrip(store, jobs: ["job_errors"])
        #expect(restored.aggregate("job_errors")?.videos == store.aggregate("job_errors")?.videos)
    }

    @Test func forgottenJobsLeaveNoRecordsAndOrphansAreReported() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("progress.state", partitions: 4)
        let producer = try KafkaProducer(configuration: .init(bootstrapServers: cluster.bootstrapServers), logger: logger)
        let changelog = StateChangelog(producer: producer, topic: "progress.state")
        let store = JobStore(limits: StoreLimits(finishedJobRetentionMs: 10_000, idleJobRetentionMs: 10_000), metrics: BridgeMetrics())
        var e = StoreEvents("job_gone")
        _ = store.apply(e.running())
        for i in 0..<20 { _ = store.apply(e.completed("v\(i)", at: Int64(i))) }
        try await changelog.write(["job_gone"], from: store)
        // Forgotten by retention once the stream moved on: tombstones for every video and the header.
        var later = StoreEvents("job_later")
        _ = store.apply(later.running(at: 1_000_000))
        let forgotten = store.evictExpired()
        #expect(forgotten.map(\.jobId) == ["job_gone"] && forgotten[0].videoIds.count == 20)
        try await changelog.write([], forgotten: forgotten, from: store)
        // A video record without its header (as a crash between the two writes of a new job's first checkpoint leaves).
        try await producer.send(topic: "progress.state", key: StateChangelog.videoKey("job_orphan", "v1"), value: Array(#"{"i":"v1","j":"job_orphan","at":1,"s":[]}"#.utf8))
        let restored = try await StateChangelog.restore(
            into: JobStore(metrics: BridgeMetrics()), bootstrapServers: cluster.bootstrapServers, topic: "progress.state", properties: .init(),
            limits: .init(), logger: logger)
        #expect(restored.jobs == 0)
        #expect(restored.orphans.map(\.jobId) == ["job_orphan"])
    }

    @Test func onlyChangedVideosAreWrittenAgain() async throws {
        let store = JobStore(metrics: BridgeMetrics())
        var e = StoreEvents("job_delta")
        _ = store.apply(e.running())
        for i in 0..<100 { _ = store.apply(e.completed("v\(i)", at: Int64(i))) }
        #expect(store.takeCheckpoint("job_delta")?.changedVideos.count == 100)
        _ = store.apply(e.completed("v7", at: 1000))
        let second = try #require(store.takeCheckpoint("job_delta"))
        #expect(second.changedVideos.map(\.id) == ["v7"])
        store.markChanged("job_delta", videoIds: ["v7"])  // a failed write gives the marks back
        #expect(store.takeCheckpoint("job_delta")?.changedVideos.map(\.id) == ["v7"])
    }
}

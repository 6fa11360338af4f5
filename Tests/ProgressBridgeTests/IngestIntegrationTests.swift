import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWSTesting
import JSONSchema
import Kafka
import Logging
import ProgressContract
import Testing

@testable import ProgressBridge

/// The data path in process: librdkafka's mock cluster, a real producer, the ingest service,
/// the store and the WebSocket/REST application on an ephemeral port.
struct BridgeHarness {
    let cluster: KafkaMockCluster
    let producer: KafkaProducer
    let store: JobStore
    let metrics: BridgeMetrics
    let ingest: IngestService
    let logger = Logger(label: "test")
    let topic = "progress.events"
    let deadLetterTopic = "progress.events.dlq"

    init() throws {
        cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic(topic, partitions: 2)
        try cluster.createTopic(deadLetterTopic, partitions: 1)
        producer = try KafkaProducer(configuration: .init(bootstrapServers: cluster.bootstrapServers), logger: logger)
        metrics = BridgeMetrics()
        store = JobStore(metrics: metrics)
        let validator = try BridgeRuntime.loadValidator(schemasPath: Self.schemasDirectory)
        let properties = KafkaProperties(["fetch.wait.max.ms": "10"])
        let reader = try KafkaPartitionReader(bootstrapServers: cluster.bootstrapServers, properties: properties, logger: logger)
        let membership = try KafkaGroupMembership(
            configuration: .init(bootstrapServers: cluster.bootstrapServers, groupId: "it-\(UUID().uuidString)", topics: [topic], properties: properties),
            logger: logger)
        ingest = IngestService(
            reader: reader, membership: membership, deadLetterProducer: producer, deadLetterTopic: deadLetterTopic, decoder: EventDecoder(validator: validator),
            store: store, metrics: metrics, readiness: Readiness(), logger: logger)
    }

    static let schemasDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("schemas").path

    func publish(_ jobId: String, _ json: String) async throws {
        try await producer.send(topic: topic, key: Array(jobId.utf8), value: Array(json.utf8))
    }

    /// Runs the ingest service while `body` runs.
    func withIngest<T: Sendable>(_ body: @Sendable @escaping () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                try await ingest.run()
                return nil
            }
            group.addTask { try await body() }
            while let result = try await group.next() {
                if let value = result {
                    group.cancelAll()
                    return value
                }
            }
            fatalError("unreachable")
        }
    }

    func event(_ jobId: String, _ type: String, _ data: String, second: Int, id: String = UUID().uuidString) -> String {
        let ts = "2026-11-24T10:00:" + (second < 10 ? "0\(second)" : "\(second)") + ".000Z"
        return #"{"schema_version":1,"event_id":"\#(id)","type":"\#(type)","job_id":"\#(jobId)","occurred_at":"\#(ts)","data":\#(data)}"#
    }
}

@Suite("Ingest → store → WebSocket, in process", .serialized)
struct IngestIntegrationTests {
    @Test func liveEventsReachASubscriberAfterItsSnapshot() async throws {
        let h = try BridgeHarness()
        let jobId = "job_it_1"
        let app = buildApplication(
            store: h.store, metrics: h.metrics, settings: .init(), authenticator: .disabled, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: h.logger)
        let received = try await h.withIngest {
            try await app.test(.live) { client in
                let messages = MessageLog()
                try await client.ws("/?job_id=\(jobId)&token=t&connection_id=conn_it") { inbound, _, _ in
                    var iterator = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                    // ack + snapshot, then publish and read live events until job.completed.
                    for _ in 0..<2 { if case .text(let t) = try await iterator.next() { messages.append(t) } }
                    try await h.publish(jobId, h.event(jobId, "job.state_changed", #"{"from":null,"to":"running","job":{"total_videos":2}}"#, second: 1))
                    try await h.publish(jobId, h.event(jobId, "video.completed", #"{"video_id":"a","processing_ms":100}"#, second: 2, id: "dup"))
                    try await h.publish(jobId, h.event(jobId, "video.completed", #"{"video_id":"a","processing_ms":100}"#, second: 2, id: "dup"))
                    try await h.publish(jobId, h.event(jobId, "video.failed", #"{"video_id":"b","error":{"code":"X","message":"y"},"retryable":false}"#, second: 3))
                    try await h.publish(jobId, h.event(jobId, "job.completed", "{}", second: 4))
                    while let message = try await iterator.next() {
                        guard case .text(let t) = message else { continue }
                        messages.append(t)
                        if t.contains(#""type":"job.completed""#) { break }
                    }
                }
                return messages.all
            }
        }
        let parsed = try received.map { try JSONParser().parse($0) }
        #expect(parsed.map { $0["type"]?.stringValue } == ["connection.ack", "job.snapshot", "job.state_changed", "video.completed", "video.failed", "job.completed"])
        // seq = input offset + 1: the job's five records are offsets 0…4 of its partition (a fresh cluster), and the
        // duplicate at offset 2 causes no message.
        #expect(parsed[2...].map { $0["seq"]?.int64Value } == [1, 2, 4, 5])
        let final = try #require(parsed.last?["data"])
        #expect(final["completed"]?.int64Value == 1)
        #expect(final["failed"]?.int64Value == 1)
        #expect(final["percent_complete"]?.doubleValue == 100)
        #expect(final["success_rate"]?.doubleValue == 0.5)
        #expect(h.metrics.render().contains("progress_bridge_events_duplicate_total 1"))
    }

    @Test func invalidEventsAreDeadLetteredWithReasonAndSource() async throws {
        let h = try BridgeHarness()
        let jobId = "job_it_2"
        try await h.withIngest {
            // Only the partition's owner dead-letters: wait for the group's first assignment (3 s on the mock).
            for _ in 0..<300 where !h.metrics.render().contains("progress_bridge_partitions_owned 2") { try await Task.sleep(for: .milliseconds(50)) }
            try await h.publish(jobId, "{oops")
            try await h.publish(jobId, h.event(jobId, "video.completed", #"{"video_id":"a"}"#, second: 1))
            try await h.publish(jobId, h.event(jobId, "video.completed", #"{"video_id":"a","processing_ms":5}"#, second: 2))
            // Wait until the valid one is applied: the bad ones before it were handled first.
            for _ in 0..<200 where h.store.aggregate(jobId)?.progress().completed != 1 { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(h.store.aggregate(jobId)?.progress().completed == 1)

        let reader = try KafkaPartitionReader(bootstrapServers: h.cluster.bootstrapServers, logger: h.logger)
        let box = MessageBox()
        try await reader.read(TopicPartition(topic: h.deadLetterTopic, partition: 0), from: 0, to: 2, timeoutMs: 10_000) { box.append($0) }
        await reader.close()
        let dead = box.all
        #expect(dead.count == 2)
        let reasons = dead.map { m in m.headers.first { $0.name == "x-dlq-reason" }.flatMap { $0.value.map { String(decoding: $0, as: UTF8.self) } } }
        #expect(reasons == ["malformed_json", "schema_violation"])
        #expect(dead[0].value == Array("{oops".utf8))
        #expect(dead.allSatisfy { m in m.headers.contains { $0.name == "x-dlq-source-offset" } && m.key == Array(jobId.utf8) })
        #expect(h.metrics.render().contains("progress_bridge_events_dead_lettered_total 2"))
    }
}

/// Collects text frames from a WebSocket handler.
final class MessageLog: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ text: String) { storage.withLock { $0.append(text) } }
    var all: [String] { storage.withLock { $0 } }
}

import Synchronization

/// Collects records from a reader's callback.
final class MessageBox: Sendable {
    private let messages = Mutex<[KafkaMessage]>([])
    func append(_ message: KafkaMessage) { messages.withLock { $0.append(message) } }
    var all: [KafkaMessage] { messages.withLock { $0 } }
}

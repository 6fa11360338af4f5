import CRdKafka
import Logging

/// Reads a whole topic, from the beginning to the end it had when reading started, without a
/// consumer group (nothing is committed). Used to restore state from a changelog topic.
public final class KafkaTopicReader: Sendable {
    private let client: KafkaClientHandle
    private let queue: QueueHandle
    public let topic: String

    /// Creates a reader of `topic`.
    public init(bootstrapServers: String, topic: String, properties: KafkaProperties = .init(), logger: Logger) throws(KafkaError) {
        self.topic = topic
        let effective = KafkaProperties([
            "bootstrap.servers": bootstrapServers,
            "group.id": "progress-bridge-restore",  // required by librdkafka's consumer; never committed
            "enable.auto.commit": "false",
            "enable.partition.eof": "false",
        ]).merging(properties.values).merging(["enable.auto.commit": "false"])
        client = try KafkaClientHandle(type: RD_KAFKA_CONSUMER, properties: effective, logger: logger)
        rd_kafka_poll_set_consumer(client.pointer)
        queue = QueueHandle(rd_kafka_queue_get_consumer(client.pointer)!, owner: client)
    }

    /// Calls `body` for every record now in the topic, partition by partition in offset order.
    /// A topic that does not exist reads as empty.
    public func readAll(timeoutMs: Int32 = 30_000, _ body: (KafkaMessage) throws -> Void) async throws {
        let client = self.client
        let topic = self.topic
        // Partitions and their current ends.
        let ends: [(Int32, Int64, Int64)] = try await blocking { () -> Result<[(Int32, Int64, Int64)], KafkaError> in
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let handle = rd_kafka_topic_new(client.pointer, topic, nil)
            defer { if let handle { rd_kafka_topic_destroy(handle) } }
            let err = rd_kafka_metadata(client.pointer, 0, handle, &metadata, timeoutMs)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { return .failure(KafkaError(err, context: "metadata of \(topic)")) }
            defer { rd_kafka_metadata_destroy(metadata) }
            guard metadata.pointee.topic_cnt > 0 else { return .success([]) }
            let entry = metadata.pointee.topics[0]
            if entry.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART { return .success([]) }
            guard entry.err == RD_KAFKA_RESP_ERR_NO_ERROR else { return .failure(KafkaError(entry.err, context: "metadata of \(topic)")) }
            var result: [(Int32, Int64, Int64)] = []
            for i in 0..<Int(entry.partition_cnt) {
                let partition = entry.partitions[i].id
                var low: Int64 = 0
                var high: Int64 = 0
                let werr = rd_kafka_query_watermark_offsets(client.pointer, topic, partition, &low, &high, timeoutMs)
                guard werr == RD_KAFKA_RESP_ERR_NO_ERROR else { return .failure(KafkaError(werr, context: "watermarks of \(topic)/\(partition)")) }
                result.append((partition, low, high))
            }
            return .success(result)
        }.get()
        var remaining = Dictionary(uniqueKeysWithValues: ends.filter { $0.2 > $0.1 }.map { ($0.0, $0.2) })
        guard !remaining.isEmpty else { return }
        let assignErr = await blocking { () -> rd_kafka_resp_err_t in
            let list = rd_kafka_topic_partition_list_new(Int32(ends.count))!
            defer { rd_kafka_topic_partition_list_destroy(list) }
            for (partition, _, _) in ends {
                rd_kafka_topic_partition_list_add(list, topic, partition)!.pointee.offset = Int64(RD_KAFKA_OFFSET_BEGINNING)
            }
            return rd_kafka_assign(client.pointer, list)
        }
        if assignErr != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(assignErr, context: "assign \(topic)") }
        let queue = self.queue
        let deadline = ContinuousClock.now + .milliseconds(Int(timeoutMs) * 4)
        while !remaining.isEmpty {
            if ContinuousClock.now > deadline {
                throw KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue, message: "reading \(topic) did not reach its end in time")
            }
            try Task.checkCancellation()
            let batch = await blocking { () -> [KafkaMessage] in
                var buffer = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: 500)
                let count = rd_kafka_consume_batch_queue(queue.pointer, 100, &buffer, 500)
                var messages: [KafkaMessage] = []
                for i in 0..<max(0, count) {
                    guard let raw = buffer[i] else { continue }
                    defer { rd_kafka_message_destroy(raw) }
                    if raw.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR { messages.append(KafkaConsumer.copy(raw)) }
                }
                return messages
            }
            for message in batch {
                try body(message)
                if let end = remaining[message.partition], message.offset + 1 >= end { remaining[message.partition] = nil }
            }
        }
    }

    deinit {
        _ = rd_kafka_consumer_close(client.pointer)
    }
}

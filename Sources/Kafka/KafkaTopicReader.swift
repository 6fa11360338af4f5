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
            client.partitions(of: topic, timeoutMs: timeoutMs).flatMap { ids in
                var result: [(Int32, Int64, Int64)] = []
                for id in ids {
                    switch client.watermarks(TopicPartition(topic: topic, partition: id), timeoutMs: timeoutMs) {
                    case .success(let marks): result.append((id, marks.low, marks.high))
                    case .failure(let error): return .failure(error)
                    }
                }
                return .success(result)
            }
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
                    if raw.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR { messages.append(KafkaMessage(copying: raw)) }
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

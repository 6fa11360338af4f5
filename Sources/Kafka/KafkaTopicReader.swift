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
    ///
    /// "Now" is a consistent cut across partitions: a writer that writes a record to one partition and, once it is
    /// acknowledged, another to a second partition (the state topic's videos, then their job's header) must never be
    /// read with the second and without the first. Partition ends are asked one after the other, so a single look
    /// can miss the first record and see the second; so the ends are asked again after reading up to them, until a
    /// look finds nothing new — then every record acknowledged before any record read has been read too. Returns
    /// false when `maxLooks` looks all found something new (the topic never stood still): the cut may then be torn.
    @discardableResult
    public func readAll(timeoutMs: Int32 = 30_000, maxLooks: Int = 50, _ body: (KafkaMessage) throws -> Void) async throws -> Bool {
        let client = self.client
        let topic = self.topic
        // The partitions' current ends (low and high watermarks).
        func ends() async throws -> [(partition: Int32, low: Int64, high: Int64)] {
            try await blocking { () -> Result<[(partition: Int32, low: Int64, high: Int64)], KafkaError> in
                client.partitions(of: topic, timeoutMs: timeoutMs).flatMap { ids in
                    var result: [(partition: Int32, low: Int64, high: Int64)] = []
                    for id in ids {
                        switch client.watermarks(TopicPartition(topic: topic, partition: id), timeoutMs: timeoutMs) {
                        case .success(let marks): result.append((id, marks.low, marks.high))
                        case .failure(let error): return .failure(error)
                        }
                    }
                    return .success(result)
                }
            }.get()
        }
        let first = try await ends()
        // Where each partition has been read to (the offset of its next record).
        var reached = Dictionary(uniqueKeysWithValues: first.map { ($0.partition, $0.low) })
        var remaining = Dictionary(uniqueKeysWithValues: first.filter { $0.high > $0.low }.map { ($0.partition, $0.high) })
        guard !remaining.isEmpty else { return true }
        let assignErr = await blocking { () -> rd_kafka_resp_err_t in
            let list = rd_kafka_topic_partition_list_new(Int32(first.count))!
            defer { rd_kafka_topic_partition_list_destroy(list) }
            for end in first {
                rd_kafka_topic_partition_list_add(list, topic, end.partition)!.pointee.offset = Int64(RD_KAFKA_OFFSET_BEGINNING)
            }
            return rd_kafka_assign(client.pointer, list)
        }
        if assignErr != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(assignErr, context: "assign \(topic)") }
        let (queue, status) = (self.queue, client.status)
        let deadline = ContinuousClock.now + .milliseconds(Int(timeoutMs) * 4)
        var looks = 1
        while true {
            while !remaining.isEmpty {
                if ContinuousClock.now > deadline {
                    throw KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue, message: "reading \(topic) did not reach its end in time")
                }
                try Task.checkCancellation()
                // What has arrived, waiting only for the first record (librdkafka's batch call would wait out its whole
                // timeout for the batch to fill: at every partition's last, short batch).
                let batch = await blocking { KafkaClientHandle.consumeBatch(queue, timeoutMs: 100, size: 500, status: status) }
                for message in batch {
                    try body(message)
                    reached[message.partition] = max(reached[message.partition] ?? 0, message.offset + 1)
                    if let end = remaining[message.partition], message.offset + 1 >= end { remaining[message.partition] = nil }
                }
            }
            // Look again: anything written meanwhile (a partition asked early may have had a record the others' now
            // depend on) is read too, until a look finds nothing new. (A partition added meanwhile is not assigned:
            // partitions are not added to a state topic while bridges run.)
            guard looks < maxLooks else { return false }
            looks += 1
            for end in try await ends() where end.high > (reached[end.partition] ?? end.high) {
                remaining[end.partition] = end.high
            }
            if remaining.isEmpty { return true }
        }
    }

    deinit {
        _ = rd_kafka_consumer_close(client.pointer)
    }
}

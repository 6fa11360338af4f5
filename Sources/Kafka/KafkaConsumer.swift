import CRdKafka
import Logging
import Synchronization

/// A consumer-group member over librdkafka, with application-stored offsets (at-least-once).
///
/// Call `poll()` repeatedly; after an event is fully handled call `storeOffset(of:)`. librdkafka
/// commits stored offsets in the background and on `close()`.
public final class KafkaConsumer: Sendable {
    private let client: KafkaClientHandle
    private let queue: QueueHandle
    private let closed = Atomic<Bool>(false)
    /// The configuration in effect.
    public let configuration: KafkaConsumerConfiguration

    /// What librdkafka reported (errors, broker reachability).
    public var status: KafkaClientStatus { client.status }

    /// Creates the consumer and subscribes to the configured topics.
    public init(configuration: KafkaConsumerConfiguration, logger: Logger) throws(KafkaError) {
        self.configuration = configuration
        let client = try KafkaClientHandle(type: RD_KAFKA_CONSUMER, properties: configuration.effectiveProperties, logger: logger)
        self.client = client
        rd_kafka_poll_set_consumer(client.pointer)
        self.queue = QueueHandle(rd_kafka_queue_get_consumer(client.pointer)!, owner: client)
        let list = rd_kafka_topic_partition_list_new(Int32(configuration.topics.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in configuration.topics {
            rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA)
        }
        let err = rd_kafka_subscribe(client.pointer, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "subscribe to \(configuration.topics)") }
    }

    /// Waits up to the configured poll timeout for messages and returns up to `maxBatch` of them.
    /// Consumer errors (not messages) are reported to `status` and skipped.
    public func poll() async -> [KafkaMessage] {
        let queue = self.queue
        let status = client.status
        let timeout = Int32(configuration.pollTimeoutMs)
        let size = configuration.maxBatch
        return await blocking {
            var buffer = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: size)
            let count = rd_kafka_consume_batch_queue(queue.pointer, Int32(timeout), &buffer, size)
            guard count > 0 else { return [] }
            var messages: [KafkaMessage] = []
            messages.reserveCapacity(count)
            for i in 0..<count {
                guard let raw = buffer[i] else { continue }
                defer { rd_kafka_message_destroy(raw) }
                let m = raw.pointee
                if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    if m.err != RD_KAFKA_RESP_ERR__PARTITION_EOF {
                        status.recordError(code: m.err, reason: String(cString: rd_kafka_err2str(m.err)))
                    }
                    continue
                }
                messages.append(KafkaConsumer.copy(raw))
            }
            if !messages.isEmpty { status.markHealthy() }
            return messages
        }
    }

    static func copy(_ raw: UnsafeMutablePointer<rd_kafka_message_t>) -> KafkaMessage {
        let m = raw.pointee
        let topic = String(cString: rd_kafka_topic_name(m.rkt))
        let value = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: m.len)) } ?? []
        let key = m.key.map { Array(UnsafeRawBufferPointer(start: $0, count: m.key_len)) }
        var headers: [KafkaHeader] = []
        var hdrs: OpaquePointer?
        if rd_kafka_message_headers(raw, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs {
            var index = 0
            var name: UnsafePointer<CChar>?
            var valuePointer: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(hdrs, index, &name, &valuePointer, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let headerValue = valuePointer.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
                headers.append(KafkaHeader(name: name.map { String(cString: $0) } ?? "", value: headerValue))
                index += 1
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(raw, &timestampType)
        return KafkaMessage(
            topic: topic, partition: m.partition, offset: m.offset, key: key, value: value, headers: headers,
            timestampMs: timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp, isTombstone: m.payload == nil)
    }

    /// Marks `message` as fully handled: its offset + 1 will be committed.
    /// Fails harmlessly if the partition was revoked meanwhile (the new owner re-reads it).
    public func storeOffset(of message: KafkaMessage) throws(KafkaError) {
        let list = rd_kafka_topic_partition_list_new(1)!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let entry = rd_kafka_topic_partition_list_add(list, message.topic, message.partition)!
        entry.pointee.offset = message.offset + 1
        let err = rd_kafka_offsets_store(client.pointer, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "store offset \(message.topic)/\(message.partition)@\(message.offset)") }
        if entry.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(entry.pointee.err, context: "store offset \(message.topic)/\(message.partition)@\(message.offset)")
        }
    }

    /// Commits the stored offsets now, waiting for the broker's answer.
    public func commit() async throws(KafkaError) {
        let client = self.client
        let err = await blocking { rd_kafka_commit(client.pointer, nil, 0) }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET {
            throw KafkaError(err, context: "commit offsets")
        }
    }

    /// Commits exactly these offsets (the next offset to read, per partition) and waits for the answer.
    public func commit(_ offsets: [TopicPartitionOffset]) async throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let client = self.client
        let err = await blocking {
            let list = rd_kafka_topic_partition_list_new(Int32(offsets.count))!
            defer { rd_kafka_topic_partition_list_destroy(list) }
            for entry in offsets {
                rd_kafka_topic_partition_list_add(list, entry.topic, entry.partition)!.pointee.offset = entry.offset
            }
            return rd_kafka_commit(client.pointer, list, 0)
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "commit offsets") }
    }

    /// The partitions assigned to this member now (empty while the group rebalances).
    public func assignedPartitions() -> Set<TopicPartition> {
        var assignment: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(client.pointer, &assignment) == RD_KAFKA_RESP_ERR_NO_ERROR, let assignment else { return [] }
        defer { rd_kafka_topic_partition_list_destroy(assignment) }
        var result = Set<TopicPartition>()
        for i in 0..<Int(assignment.pointee.cnt) {
            let entry = assignment.pointee.elems[i]
            result.insert(TopicPartition(topic: String(cString: entry.topic), partition: entry.partition))
        }
        return result
    }

    /// Lag per assigned partition: high watermark − current position, from librdkafka's cached watermarks.
    public func partitionLags() -> [PartitionLag] {
        var assignment: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(client.pointer, &assignment) == RD_KAFKA_RESP_ERR_NO_ERROR, let assignment else { return [] }
        defer { rd_kafka_topic_partition_list_destroy(assignment) }
        _ = rd_kafka_position(client.pointer, assignment)
        var result: [PartitionLag] = []
        for i in 0..<Int(assignment.pointee.cnt) {
            let entry = assignment.pointee.elems[i]
            let topic = String(cString: entry.topic)
            var low: Int64 = 0
            var high: Int64 = 0
            let err = rd_kafka_get_watermark_offsets(client.pointer, entry.topic, entry.partition, &low, &high)
            var lag: Int64?
            if err == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 {
                lag = entry.offset >= 0 ? max(0, high - entry.offset) : max(0, high - low)
            }
            result.append(PartitionLag(topic: topic, partition: entry.partition, lag: lag))
        }
        return result
    }

    /// Commits stored offsets and leaves the group. Safe to call more than once.
    public func close() async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let client = self.client
        _ = await blocking { rd_kafka_consumer_close(client.pointer) }
    }

    deinit {
        if !closed.load(ordering: .acquiring) { _ = rd_kafka_consumer_close(client.pointer) }
    }
}

/// Owns an `rd_kafka_queue_t`; keeps its client alive, since a queue must go before its handle.
final class QueueHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    private let owner: KafkaClientHandle
    init(_ pointer: OpaquePointer, owner: KafkaClientHandle) {
        self.pointer = pointer
        self.owner = owner
    }
    deinit { rd_kafka_queue_destroy(pointer) }
}

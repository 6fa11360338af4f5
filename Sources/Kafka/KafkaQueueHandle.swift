import CRdKafka

/// Owns an `rd_kafka_queue_t`; keeps its client alive, since a queue must go before its handle.
final class QueueHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    private let owner: KafkaClientHandle
    init(_ pointer: OpaquePointer, owner: KafkaClientHandle) {
        self.pointer = pointer
        self.owner = owner
    }
    deinit { rd_kafka_queue_destroy(pointer) }

    /// Takes up to `size` records, waiting up to `timeoutMs` for the batch; errors and partition ends are dropped.
    /// (Blocks: call it off the cooperative pool, as `blocking` does.)
    func take(size: Int, timeoutMs: Int32) -> [KafkaMessage] {
        var buffer = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: max(1, size))
        let count = rd_kafka_consume_batch_queue(pointer, timeoutMs, &buffer, buffer.count)
        var messages: [KafkaMessage] = []
        var topics = TopicNames()
        for i in 0..<max(0, count) {
            guard let raw = buffer[i] else { continue }
            defer { rd_kafka_message_destroy(raw) }
            if raw.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR { messages.append(KafkaMessage(copying: raw, topics: &topics)) }
        }
        return messages
    }
}

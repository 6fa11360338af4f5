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
}

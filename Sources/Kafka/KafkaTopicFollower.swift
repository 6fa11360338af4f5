import CRdKafka
import Logging

/// Follows a topic as a member of its own consumer group (offsets committed automatically): what a
/// small side consumer needs, such as the demo monitor reading the command topic. Not for the bridge's input, which
/// has its own reader and group membership.
public final class KafkaTopicFollower: Sendable {
    private let client: KafkaClientHandle
    private let queue: QueueHandle
    public let topic: String

    /// Subscribes to `topic` in `groupId`, from where the group left off (its beginning, the first time).
    public init(bootstrapServers: String, topic: String, groupId: String, properties: KafkaProperties = .init(), logger: Logger) throws(KafkaError) {
        self.topic = topic
        let effective = KafkaProperties([
            "bootstrap.servers": bootstrapServers, "group.id": groupId, "auto.offset.reset": "earliest", "enable.partition.eof": "false",
        ]).merging(properties.values)
        client = try KafkaClientHandle(type: RD_KAFKA_CONSUMER, properties: effective, logger: logger)
        rd_kafka_poll_set_consumer(client.pointer)
        queue = QueueHandle(rd_kafka_queue_get_consumer(client.pointer)!, owner: client)
        let list = rd_kafka_topic_partition_list_new(1)!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA)
        let error = rd_kafka_subscribe(client.pointer, list)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(error, context: "subscribe \(topic)") }
    }

    /// The records that arrived since the last call (at most `limit`), without waiting for more.
    public func poll(limit: Int = 100) async -> [KafkaMessage] {
        let (queue, status) = (self.queue, client.status)
        return await blocking { KafkaClientHandle.consumeBatch(queue, timeoutMs: 0, size: limit, status: status) }
    }

    deinit {
        _ = rd_kafka_consumer_close(client.pointer)
    }
}

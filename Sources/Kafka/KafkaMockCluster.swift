import CRdKafka
import Logging

/// librdkafka's built-in mock cluster: the real Kafka wire protocol on loopback, with fault
/// injection. Used for tests and for the embedded default. Keeps about 5 MiB per partition.
public final class KafkaMockCluster: @unchecked Sendable {
    // The mock cluster is driven by its own librdkafka thread; these pointers never change.
    private let owner: KafkaClientHandle
    private let cluster: OpaquePointer
    /// `bootstrap.servers` for clients of this cluster (e.g. `127.0.0.1:39521`).
    public let bootstrapServers: String
    /// Broker ids are 1…`brokerCount`.
    public let brokerCount: Int

    /// Starts a mock cluster with `brokers` brokers.
    public init(brokers: Int = 1, logger: Logger = Logger(label: "kafka.mock")) throws(KafkaError) {
        owner = try KafkaClientHandle(type: RD_KAFKA_PRODUCER, properties: KafkaProperties(["log_level": "3"]), logger: logger)
        guard let cluster = rd_kafka_mock_cluster_new(owner.pointer, Int32(brokers)) else {
            throw KafkaError(code: RD_KAFKA_RESP_ERR__FAIL.rawValue, message: "cannot start the mock Kafka cluster")
        }
        self.cluster = cluster
        self.brokerCount = brokers
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    /// Creates a topic (the mock has no admin API).
    public func createTopic(_ name: String, partitions: Int = 4, replicationFactor: Int = 1) throws(KafkaError) {
        let err = rd_kafka_mock_topic_create(cluster, name, Int32(partitions), Int32(replicationFactor))
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "create topic \(name)") }
    }

    /// Takes broker `id` down (connections refused/closed) until `setBrokerUp`.
    public func setBrokerDown(_ id: Int32) {
        _ = rd_kafka_mock_broker_set_down(cluster, id)
    }

    /// Brings broker `id` back.
    public func setBrokerUp(_ id: Int32) {
        _ = rd_kafka_mock_broker_set_up(cluster, id)
    }

    /// Adds `ms` of round-trip time to broker `id`.
    public func setBrokerRTT(_ id: Int32, ms: Int) {
        _ = rd_kafka_mock_broker_set_rtt(cluster, id, Int32(ms))
    }

    /// Makes the next requests of Kafka API `apiKey` fail with `errors` (librdkafka codes), in order.
    public func pushRequestErrors(apiKey: Int16, errors: [Int32]) {
        var errs = errors.map { rd_kafka_resp_err_t(rawValue: $0) }
        rd_kafka_mock_push_request_errors_array(cluster, apiKey, errs.count, &errs)
    }

    /// Makes requests about `topic` fail with librdkafka error `code` (0 clears it).
    public func setTopicError(_ topic: String, code: Int32) {
        rd_kafka_mock_topic_set_error(cluster, topic, rd_kafka_resp_err_t(rawValue: code))
    }

    /// Moves the leadership of `topic`/`partition` to broker `id`.
    public func setPartitionLeader(topic: String, partition: Int32, brokerId: Int32) {
        _ = rd_kafka_mock_partition_set_leader(cluster, topic, partition, brokerId)
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
    }
}

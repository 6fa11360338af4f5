import CRdKafka

/// librdkafka properties (`key=value`), validated when a client is created.
public struct KafkaProperties: Sendable, Hashable {
    /// The properties, as librdkafka names them (see its CONFIGURATION.md).
    public var values: [String: String]

    /// Creates properties from a dictionary.
    public init(_ values: [String: String] = [:]) {
        self.values = values
    }

    /// Returns these properties with `overrides` on top.
    public func merging(_ overrides: [String: String]) -> KafkaProperties {
        KafkaProperties(values.merging(overrides) { _, new in new })
    }

    /// Builds an `rd_kafka_conf_t`; the caller owns it until it is handed to `rd_kafka_new`.
    func makeConf() throws(KafkaError) -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else { throw .configuration("rd_kafka_conf_new failed") }
        var errorBuffer = [CChar](repeating: 0, count: 512)
        for (key, value) in values.sorted(by: { $0.key < $1.key }) {
            let result = rd_kafka_conf_set(conf, key, value, &errorBuffer, errorBuffer.count)
            if result != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let reason = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                throw .configuration("invalid Kafka property \(key): \(reason)")
            }
        }
        return conf
    }
}

/// How the consumer joins its group and what it reads. `Sendable`, with documented defaults.
public struct KafkaConsumerConfiguration: Sendable {
    /// `bootstrap.servers`.
    public var bootstrapServers: String
    /// `group.id`. Default `progress-bridge`.
    public var groupId: String
    /// Topics to subscribe to. Default `["progress.events"]`.
    public var topics: [String]
    /// Extra librdkafka properties (SASL/TLS included); they win over the defaults below.
    public var properties: KafkaProperties
    /// Most messages taken per poll. Default 500.
    public var maxBatch: Int
    /// How long one poll may block, in milliseconds. Default 100.
    public var pollTimeoutMs: Int32
    /// Whether librdkafka commits stored offsets in the background (every second). Default true;
    /// false when the application commits explicitly (after its own checkpoint).
    public var autoCommit: Bool

    /// Creates a configuration.
    public init(
        bootstrapServers: String, groupId: String = "progress-bridge", topics: [String] = ["progress.events"],
        properties: KafkaProperties = .init(), maxBatch: Int = 500, pollTimeoutMs: Int32 = 100, autoCommit: Bool = true
    ) {
        self.bootstrapServers = bootstrapServers
        self.groupId = groupId
        self.topics = topics
        self.properties = properties
        self.maxBatch = maxBatch
        self.pollTimeoutMs = pollTimeoutMs
        self.autoCommit = autoCommit
    }

    /// The effective librdkafka properties. At-least-once: offsets are stored by the
    /// application only after an event is fully handled, and committed in the background.
    var effectiveProperties: KafkaProperties {
        KafkaProperties([
            "bootstrap.servers": bootstrapServers,
            "group.id": groupId,
            "enable.auto.commit": autoCommit ? "true" : "false",
            "auto.commit.interval.ms": "1000",
            "enable.auto.offset.store": "false",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": "false",
        ]).merging(properties.values).merging([
            // Not negotiable: storing offsets early would lose events.
            "enable.auto.offset.store": "false",
            "enable.auto.commit": autoCommit ? "true" : "false",
        ])
    }
}

/// How the producer writes. `Sendable`, with documented defaults.
public struct KafkaProducerConfiguration: Sendable {
    /// `bootstrap.servers`.
    public var bootstrapServers: String
    /// Extra librdkafka properties; they win over the defaults below.
    public var properties: KafkaProperties

    /// Creates a configuration.
    public init(bootstrapServers: String, properties: KafkaProperties = .init()) {
        self.bootstrapServers = bootstrapServers
        self.properties = properties
    }

    /// Idempotent, fully acknowledged writes; low linger so dead-letters are quick.
    var effectiveProperties: KafkaProperties {
        KafkaProperties([
            "bootstrap.servers": bootstrapServers,
            "enable.idempotence": "true",
            "acks": "all",
            "linger.ms": "5",
            "message.timeout.ms": "30000",
        ]).merging(properties.values)
    }
}

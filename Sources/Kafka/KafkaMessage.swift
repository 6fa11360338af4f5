import CRdKafka

/// One consumed Kafka record, copied out of librdkafka's buffers.
public struct KafkaMessage: Sendable {
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    public let key: [UInt8]?
    /// The value; empty for a tombstone (see `isTombstone`).
    public let value: [UInt8]
    /// Whether the record has no value at all (a deletion in a compacted topic).
    public let isTombstone: Bool
    public let headers: [KafkaHeader]
    /// The record's timestamp in milliseconds since the epoch, if it has one.
    public let timestampMs: Int64?

    public init(
        topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader], timestampMs: Int64?,
        isTombstone: Bool = false
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.isTombstone = isTombstone
        self.headers = headers
        self.timestampMs = timestampMs
    }
}

/// A record header.
public struct KafkaHeader: Sendable, Hashable {
    public let name: String
    public let value: [UInt8]?

    public init(name: String, value: [UInt8]?) {
        self.name = name
        self.value = value
    }

    public init(name: String, string: String) {
        self.name = name
        self.value = Array(string.utf8)
    }
}

/// The consumer's position in one partition against its high watermark.
public struct PartitionLag: Sendable, Hashable {
    public let topic: String
    public let partition: Int32
    /// High watermark − position (messages not yet consumed), or `nil` when not known yet.
    public let lag: Int64?
}

/// A position in a partition: the next offset to read.
public struct TopicPartitionOffset: Sendable, Hashable {
    public let topic: String
    public let partition: Int32
    public let offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }
}

/// One partition of a topic.
public struct TopicPartition: Sendable, Hashable {
    public let topic: String
    public let partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    /// The partition and the topic name's length, not its bytes: ingest looks partitions up for every event, a
    /// consumer reads a handful of topics, and equality still compares the names.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(partition)
        hasher.combine(topic.utf8.count)
    }

    /// The same partition of a topic of the same name. The names' byte counts are compared too, so that equal values
    /// hash alike: Swift's `==` equates canonically equivalent spellings, which may differ in length. (Kafka's topic
    /// names are ASCII — letters, digits, `.`, `_`, `-` — where the two agree.)
    public static func == (lhs: TopicPartition, rhs: TopicPartition) -> Bool {
        lhs.partition == rhs.partition && lhs.topic.utf8.count == rhs.topic.utf8.count && lhs.topic == rhs.topic
    }
}

extension KafkaMessage {
    /// A copy of a librdkafka message (which the caller still destroys). `topics` names its topic (shared by the
    /// batch's records of one topic).
    init(copying raw: UnsafeMutablePointer<rd_kafka_message_t>, topics: inout TopicNames) {
        let m = raw.pointee
        let topic = topics.name(of: m.rkt)
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
        self.init(
            topic: topic, partition: m.partition, offset: m.offset, key: key, value: value, headers: headers,
            timestampMs: timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp, isTombstone: m.payload == nil)
    }
}

/// The topic names of a batch's records: one `String` per topic, shared by its records, rather than one per record.
struct TopicNames {
    private var last: (handle: OpaquePointer, name: String)?

    mutating func name(of handle: OpaquePointer?) -> String {
        guard let handle else { return "" }
        if let last, last.handle == handle { return last.name }
        let name = String(cString: rd_kafka_topic_name(handle))
        last = (handle, name)
        return name
    }
}

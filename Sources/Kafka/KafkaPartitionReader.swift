import CRdKafka
import Logging
import NIOPosix
import Synchronization

/// Reads chosen partitions from chosen offsets without joining a consumer group and without ever committing:
/// the read side of a replica that follows every partition of its input topics (ownership, and with it the
/// commits, is `KafkaGroupMembership`'s business).
public final class KafkaPartitionReader: Sendable {
    private let client: KafkaClientHandle
    private let queue: QueueHandle
    private let closed = Atomic<Bool>(false)
    private let maxBatch: Int
    private let pollTimeoutMs: Int32
    /// The thread this reader's polls wait on, its own: a batch's records are taken and copied on the same thread
    /// every time, not on whichever of the Kafka pool's threads is free.
    private let pollThread: NIOThreadPool

    var clientHandle: KafkaClientHandle { client }

    /// What librdkafka reported (errors, broker reachability from its statistics).
    public var status: KafkaClientStatus { client.status }

    /// Creates a reader. `properties` win over the defaults, except that nothing is ever committed.
    /// - Parameters:
    ///   - maxBatch: most records per `poll()`. Default 500.
    ///   - pollTimeoutMs: how long one `poll()` may wait for the first record. Default 100.
    public init(
        bootstrapServers: String, properties: KafkaProperties = .init(), maxBatch: Int = 500, pollTimeoutMs: Int32 = 100, logger: Logger
    ) throws(KafkaError) {
        self.maxBatch = maxBatch
        self.pollTimeoutMs = pollTimeoutMs
        let effective = KafkaProperties([
            "bootstrap.servers": bootstrapServers,
            // librdkafka's consumer wants a group id even when it only reads assigned partitions; this one never
            // joins a group and never commits.
            "group.id": "progress-bridge-reader",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": "false",
        ]).merging(properties.values).merging(["enable.auto.commit": "false", "enable.auto.offset.store": "false"])
        client = try KafkaClientHandle(type: RD_KAFKA_CONSUMER, properties: effective, logger: logger)
        rd_kafka_poll_set_consumer(client.pointer)
        queue = QueueHandle(rd_kafka_queue_get_consumer(client.pointer)!, owner: client)
        pollThread = NIOThreadPool(numberOfThreads: 1)
        pollThread.start()
    }

    /// Which of `topics` the cluster does not have (from its metadata).
    public func missingTopics(_ topics: [String], timeoutMs: Int32 = 10_000) async throws(KafkaError) -> [String] {
        let present = Set(try await partitions(of: topics, timeoutMs: timeoutMs).map(\.topic))
        return topics.filter { !present.contains($0) }
    }

    /// Every partition of `topics` (from the cluster's metadata); a topic that does not exist has none.
    public func partitions(of topics: [String], timeoutMs: Int32 = 10_000) async throws(KafkaError) -> [TopicPartition] {
        let client = self.client
        return try await blocking { () -> Result<[TopicPartition], KafkaError> in
            var result: [TopicPartition] = []
            for topic in topics {
                switch client.partitions(of: topic, timeoutMs: timeoutMs) {
                case .success(let ids): result += ids.map { TopicPartition(topic: topic, partition: $0) }
                case .failure(let error): return .failure(error)
                }
            }
            return .success(result)
        }.get()
    }

    /// The current high watermark (the offset the next record will get) of each partition.
    public func highWatermarks(_ partitions: [TopicPartition], timeoutMs: Int32 = 10_000) async throws(KafkaError) -> [TopicPartition: Int64] {
        let client = self.client
        return try await blocking { () -> Result<[TopicPartition: Int64], KafkaError> in
            var result: [TopicPartition: Int64] = [:]
            for partition in partitions {
                switch client.watermarks(partition, timeoutMs: timeoutMs) {
                case .success(let marks): result[partition] = marks.high
                case .failure(let error): return .failure(error)
                }
            }
            return .success(result)
        }.get()
    }

    /// The earliest offset `partition` still keeps.
    public func lowWatermark(_ partition: TopicPartition, timeoutMs: Int32 = 10_000) async throws(KafkaError) -> Int64 {
        let client = self.client
        return try await blocking { client.watermarks(partition, timeoutMs: timeoutMs) }.get().low
    }

    /// librdkafka's position per assigned partition: the offset after the last record it handed out (it also
    /// moves past records it never hands out, such as transaction markers). Missing until a record was fetched.
    public func positions() -> [TopicPartition: Int64] {
        var assignment: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(client.pointer, &assignment) == RD_KAFKA_RESP_ERR_NO_ERROR, let assignment else { return [:] }
        defer { rd_kafka_topic_partition_list_destroy(assignment) }
        _ = rd_kafka_position(client.pointer, assignment)
        var result: [TopicPartition: Int64] = [:]
        for i in 0..<Int(assignment.pointee.cnt) {
            let entry = assignment.pointee.elems[i]
            if entry.offset >= 0 { result[TopicPartition(topic: String(cString: entry.topic), partition: entry.partition)] = entry.offset }
        }
        return result
    }

    /// Reads exactly these partitions from now on, each from its offset (an offset below zero: the earliest
    /// record still kept, as `auto.offset.reset` says).
    public func assign(_ starts: [TopicPartitionOffset]) async throws(KafkaError) {
        let client = self.client
        let err = await blocking { () -> rd_kafka_resp_err_t in
            let list = makePartitionList(starts.map { $0.offset >= 0 ? $0 : TopicPartitionOffset(topic: $0.topic, partition: $0.partition, offset: Int64(RD_KAFKA_OFFSET_INVALID)) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            return rd_kafka_assign(client.pointer, list)
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "assign \(starts.count) partitions") }
    }

    /// Waits up to the poll timeout for records and returns up to the batch size of them, in offset order per partition.
    public func poll() async -> [KafkaMessage] {
        let queue = self.queue
        let status = client.status
        let timeout = pollTimeoutMs
        let size = maxBatch
        return await blocking(on: pollThread) { KafkaClientHandle.consumeBatch(queue, timeoutMs: timeout, size: size, status: status) }
    }

    /// Calls `body` for the records of `partition` at offsets `from ..< to` (those still kept), in order.
    /// Gives up with an error when no record arrives for `timeoutMs`.
    public func read(
        _ partition: TopicPartition, from: Int64, to: Int64, timeoutMs: Int32 = 30_000, _ body: (KafkaMessage) async throws -> Void
    ) async throws {
        guard from < to else { return }
        try await assign([TopicPartitionOffset(topic: partition.topic, partition: partition.partition, offset: from)])
        var deadline = ContinuousClock.now + .milliseconds(Int(timeoutMs))
        var next = from
        while next < to {
            if ContinuousClock.now > deadline {
                throw KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue, message: "reading \(partition.topic)/\(partition.partition) \(next)..<\(to) timed out")
            }
            try Task.checkCancellation()
            let batch = await poll()
            for message in batch where message.offset >= next && message.offset < to {
                try await body(message)
                next = message.offset + 1
            }
            if !batch.isEmpty { deadline = ContinuousClock.now + .milliseconds(Int(timeoutMs)) }
            // Nothing came: the records may be gone (retention); go on from the earliest kept.
            if batch.isEmpty, case .success(let marks) = await blocking({ [client] in client.watermarks(partition, timeoutMs: 5_000) }), marks.low > next {
                next = marks.low
            }
        }
    }

    /// librdkafka's cached high watermark of each partition (no request: as of its latest fetch).
    public func highWatermarks(of partitions: some Collection<TopicPartition>) -> [TopicPartition: Int64] {
        var result: [TopicPartition: Int64] = [:]
        for partition in partitions {
            var low: Int64 = 0
            var high: Int64 = 0
            if rd_kafka_get_watermark_offsets(client.pointer, partition.topic, partition.partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 {
                result[partition] = high
            }
        }
        return result
    }

    /// Lag per partition: librdkafka's cached high watermark − `positions[partition]` (the next offset to handle).
    public func lags(positions: [TopicPartition: Int64]) -> [PartitionLag] {
        positions.map { partition, position in
            var low: Int64 = 0
            var high: Int64 = 0
            let err = rd_kafka_get_watermark_offsets(client.pointer, partition.topic, partition.partition, &low, &high)
            let lag: Int64? = err == RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0 ? max(0, high - max(position, low)) : nil
            return PartitionLag(topic: partition.topic, partition: partition.partition, lag: lag)
        }
    }

    /// Stops reading. Safe to call more than once.
    public func close() async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let client = self.client
        _ = await blocking { rd_kafka_consumer_close(client.pointer) }
    }

    deinit {
        if !closed.load(ordering: .acquiring) { _ = rd_kafka_consumer_close(client.pointer) }
        pollThread.shutdownGracefully { _ in }
    }
}

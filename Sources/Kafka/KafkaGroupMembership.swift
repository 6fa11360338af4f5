import CRdKafka
import Logging
import Synchronization

/// Membership of a consumer group that decides **who owns which partition**, without reading them: the
/// member commits offsets for the partitions it owns, and learns of assignments and revocations as
/// `Change`s that it acknowledges once it has acted on them (so a revoked partition's last checkpoint is
/// written and committed before anyone else gets it). Uses the cooperative-sticky assignor: a rebalance moves
/// only the partitions that must move, and the others keep their owner throughout.
///
/// Assigned partitions are paused at once: the replica reads every partition itself (`KafkaPartitionReader`).
public final class KafkaGroupMembership: Sendable {
    /// A rebalance step, to be passed back to `acknowledge(_:)` after the application has acted on it.
    public enum Change: Sendable, Equatable {
        /// These partitions are now this member's.
        case assigned(Set<TopicPartition>)
        /// These partitions are taken away; `lost`: the member was already out of the group (session expired),
        /// so another member may own them already and nothing may be committed for them.
        case revoked(Set<TopicPartition>, lost: Bool)
    }

    private let client: KafkaClientHandle
    private let queue: QueueHandle
    private let closed = Atomic<Bool>(false)
    /// The configuration in effect.
    public let configuration: KafkaConsumerConfiguration

    /// What librdkafka reported.
    public var status: KafkaClientStatus { client.status }

    /// Creates the member; it joins when `join()` is called. Defaults (overridable in the configuration's
    /// properties): `partition.assignment.strategy=cooperative-sticky`, `session.timeout.ms=10000`,
    /// `heartbeat.interval.ms=3000`.
    public init(configuration: KafkaConsumerConfiguration, logger: Logger) throws(KafkaError) {
        self.configuration = configuration
        let properties = KafkaProperties([
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": "10000",
            "heartbeat.interval.ms": "3000",
        ]).merging(configuration.effectiveProperties.values).merging(["enable.auto.commit": "false"])
        let client = try KafkaClientHandle(type: RD_KAFKA_CONSUMER, properties: properties, logger: logger) { conf in
            // Rebalances arrive as events, acknowledged later by the application (after its checkpoint).
            rd_kafka_conf_set_events(conf, Int32(RD_KAFKA_EVENT_REBALANCE))
        }
        self.client = client
        rd_kafka_poll_set_consumer(client.pointer)
        queue = QueueHandle(rd_kafka_queue_get_consumer(client.pointer)!, owner: client)
    }

    /// Subscribes to the configured topics: the group starts assigning partitions to this member.
    public func join() throws(KafkaError) {
        let list = makePartitionList(configuration.topics.map { TopicPartitionOffset(topic: $0, partition: RD_KAFKA_PARTITION_UA, offset: 0) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_subscribe(client.pointer, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "subscribe to \(configuration.topics)") }
    }

    /// Serves the group's protocol (heartbeats run in librdkafka's own threads; this answers rebalances) and
    /// returns what changed. Call it often — at least every `max.poll.interval.ms` — and acknowledge each change.
    public func poll(timeoutMs: Int32 = 0) async -> [Change] {
        let client = self.client
        let queue = self.queue
        return await blocking { Self.serve(queue, client: client, timeoutMs: timeoutMs) }
    }

    private static func serve(_ queue: QueueHandle, client: KafkaClientHandle, timeoutMs: Int32) -> [Change] {
        var changes: [Change] = []
        var wait = timeoutMs
        while let event = rd_kafka_queue_poll(queue.pointer, wait) {
            wait = 0
            defer { rd_kafka_event_destroy(event) }
            switch rd_kafka_event_type(event) {
            case RD_KAFKA_EVENT_REBALANCE:
                let partitions = rd_kafka_event_topic_partition_list(event).map { partitionSet($0) } ?? []
                if rd_kafka_event_error(event) == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
                    changes.append(.assigned(partitions))
                } else {
                    changes.append(.revoked(partitions, lost: rd_kafka_assignment_lost(client.pointer) != 0))
                }
            case RD_KAFKA_EVENT_ERROR:
                let err = rd_kafka_event_error(event)
                client.status.recordError(code: err, reason: rd_kafka_event_error_string(event).map { String(cString: $0) } ?? "")
            default:
                break  // records fetched before their partition was paused: nobody reads them here
            }
            // One rebalance at a time: the application acts on it before the next is served.
            if !changes.isEmpty { break }
        }
        return changes
    }

    /// Tells the group the application has acted on `change`: takes assigned partitions (paused: this member
    /// never fetches them) or gives revoked ones back.
    public func acknowledge(_ change: Change) async {
        let client = self.client
        await blocking {
            switch change {
            case .assigned(let partitions):
                let list = makePartitionList(partitions.map { TopicPartitionOffset(topic: $0.topic, partition: $0.partition, offset: Int64(RD_KAFKA_OFFSET_INVALID)) })
                defer { rd_kafka_topic_partition_list_destroy(list) }
                if let error = rd_kafka_incremental_assign(client.pointer, list) {
                    client.status.recordError(code: rd_kafka_error_code(error), reason: String(cString: rd_kafka_error_string(error)))
                    rd_kafka_error_destroy(error)
                }
                _ = rd_kafka_pause_partitions(client.pointer, list)
            case .revoked(let partitions, _):
                let list = makePartitionList(partitions.map { TopicPartitionOffset(topic: $0.topic, partition: $0.partition, offset: Int64(RD_KAFKA_OFFSET_INVALID)) })
                defer { rd_kafka_topic_partition_list_destroy(list) }
                if let error = rd_kafka_incremental_unassign(client.pointer, list) {
                    client.status.recordError(code: rd_kafka_error_code(error), reason: String(cString: rd_kafka_error_string(error)))
                    rd_kafka_error_destroy(error)
                }
            }
        }
    }

    /// The offsets the group committed for `partitions` (the next offset to read); a partition without a
    /// committed offset is missing from the answer.
    public func committed(_ partitions: some Collection<TopicPartition>, timeoutMs: Int32 = 10_000) async throws(KafkaError) -> [TopicPartition: Int64] {
        let client = self.client
        let wanted = Array(partitions)
        return try await blocking { () -> Result<[TopicPartition: Int64], KafkaError> in
            let list = makePartitionList(wanted.map { TopicPartitionOffset(topic: $0.topic, partition: $0.partition, offset: Int64(RD_KAFKA_OFFSET_INVALID)) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_committed(client.pointer, list, timeoutMs)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { return .failure(KafkaError(err, context: "committed offsets")) }
            var result: [TopicPartition: Int64] = [:]
            for i in 0..<Int(list.pointee.cnt) {
                let entry = list.pointee.elems[i]
                if entry.err != RD_KAFKA_RESP_ERR_NO_ERROR { return .failure(KafkaError(entry.err, context: "committed offset")) }
                if entry.offset >= 0 { result[TopicPartition(topic: String(cString: entry.topic), partition: entry.partition)] = entry.offset }
            }
            return .success(result)
        }.get()
    }

    /// Commits exactly these offsets (the next offset to read, per partition) and waits for the answer.
    public func commit(_ offsets: [TopicPartitionOffset]) async throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let client = self.client
        let err = await blocking {
            let list = makePartitionList(offsets)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            return rd_kafka_commit(client.pointer, list, 0)
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "commit offsets") }
    }

    /// Leaves the group at once (so its partitions move without waiting out a session); `onRevoke` runs for
    /// the partitions taken away on the way out, before they are given back. Safe to call more than once.
    public func leave(onRevoke: (Set<TopicPartition>, Bool) async -> Void) async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let client = self.client
        let queue = self.queue
        let started = await blocking { () -> Bool in
            guard let error = rd_kafka_consumer_close_queue(client.pointer, queue.pointer) else { return true }
            rd_kafka_error_destroy(error)
            return false
        }
        if started {
            let deadline = ContinuousClock.now + .seconds(30)
            while await blocking({ rd_kafka_consumer_closed(client.pointer) == 0 }), ContinuousClock.now < deadline {
                for change in await blocking({ Self.serve(queue, client: client, timeoutMs: 100) }) {
                    if case .revoked(let partitions, let lost) = change { await onRevoke(partitions, lost) }
                    await acknowledge(change)
                }
            }
        } else {
            _ = await blocking { rd_kafka_consumer_close(client.pointer) }
        }
    }

    deinit {
        if !closed.load(ordering: .acquiring) { _ = rd_kafka_consumer_close(client.pointer) }
    }
}

import CRdKafka
import Logging
import Synchronization

/// Membership of a consumer group that decides **who owns which partition**, without reading them: the
/// member stores offsets for the partitions it owns, and learns of assignments and revocations as
/// `Change`s that it acknowledges once it has acted on them (so a revoked partition's last checkpoint is
/// written and its offset stored before anyone else gets it). Uses the cooperative-sticky assignor: a rebalance
/// moves only the partitions that must move, and the others keep their owner throughout.
///
/// Stored offsets are committed by librdkafka itself — every `auto.commit.interval.ms`, and before a revoked
/// partition is given back or the member leaves — because only librdkafka knows when the group is between
/// generations: a commit sent then is refused (illegal generation), and librdkafka takes that for a lost
/// assignment, which would start the rebalance over.
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

    /// What became of the offsets librdkafka committed.
    public struct CommitResults: Sendable {
        /// Commits that failed (each is retried with the next one).
        public var failures = 0
        /// The latest failure.
        public var lastError: String?
        /// The latest offset committed per partition.
        public var committed: [TopicPartition: Int64] = [:]
    }

    private let client: KafkaClientHandle
    private let queue: QueueHandle
    private let closed = Atomic<Bool>(false)
    private let commits = CommitTracker()
    /// The configuration in effect.
    public let configuration: KafkaConsumerConfiguration

    /// What librdkafka reported.
    public var status: KafkaClientStatus { client.status }

    /// What became of the commits so far.
    public var commitResults: CommitResults { commits.results.withLock { $0 } }

    /// Creates the member; it joins when `join()` is called. Defaults (overridable in the configuration's
    /// properties): `partition.assignment.strategy=cooperative-sticky`, `session.timeout.ms=10000`,
    /// `heartbeat.interval.ms=3000`; `enable.auto.commit=true` with `enable.auto.offset.store=false` always (only
    /// offsets passed to `store(_:)` are ever committed).
    public init(configuration: KafkaConsumerConfiguration, logger: Logger) throws(KafkaError) {
        self.configuration = configuration
        let properties = KafkaProperties([
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": "10000",
            "heartbeat.interval.ms": "3000",
        ]).merging(configuration.effectiveProperties.values).merging(["enable.auto.commit": "true", "enable.auto.offset.store": "false"])
        let client = try KafkaClientHandle(type: RD_KAFKA_CONSUMER, properties: properties, logger: logger) { conf in
            // Rebalances arrive as events, acknowledged later by the application (after its checkpoint); commit
            // results too.
            rd_kafka_conf_set_events(conf, Int32(RD_KAFKA_EVENT_REBALANCE | RD_KAFKA_EVENT_OFFSET_COMMIT))
        }
        self.client = client
        rd_kafka_poll_set_consumer(client.pointer)
        queue = QueueHandle(rd_kafka_queue_get_consumer(client.pointer)!, owner: client)
    }

    /// Whether librdkafka considers this member's assignment lost (it was out of the group: session expired, or
    /// stalled past `max.poll.interval.ms`): another member may own its partitions already.
    public var isAssignmentLost: Bool { rd_kafka_assignment_lost(client.pointer) != 0 }

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
        let commits = self.commits
        // Without a wait nothing here blocks: served inline rather than by a hop to the thread pool and back (ingest
        // polls once per batch).
        if timeoutMs <= 0 { return Self.serve(queue, client: client, commits: commits, timeoutMs: 0) }
        return await blocking { Self.serve(queue, client: client, commits: commits, timeoutMs: timeoutMs) }
    }

    private static func serve(_ queue: QueueHandle, client: KafkaClientHandle, commits: CommitTracker, timeoutMs: Int32) -> [Change] {
        var changes: [Change] = []
        var wait = timeoutMs
        while let event = rd_kafka_queue_poll(queue.pointer, wait) {
            wait = 0
            defer { rd_kafka_event_destroy(event) }
            switch rd_kafka_event_type(event) {
            case RD_KAFKA_EVENT_REBALANCE:
                let partitions = rd_kafka_event_topic_partition_list(event).map { partitionSet($0) } ?? []
                switch rd_kafka_event_error(event) {
                case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
                    client.wasAssigned.store(true, ordering: .releasing)
                    changes.append(.assigned(partitions))
                case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
                    changes.append(.revoked(partitions, lost: rd_kafka_assignment_lost(client.pointer) != 0))
                default:
                    // A rebalance error: librdkafka asks for the whole assignment to be dropped — as lost.
                    client.status.recordError(code: rd_kafka_event_error(event), reason: "rebalance failed")
                    var current: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
                    if rd_kafka_assignment(client.pointer, &current) == RD_KAFKA_RESP_ERR_NO_ERROR, let current {
                        changes.append(.revoked(partitionSet(current), lost: true))
                        rd_kafka_topic_partition_list_destroy(current)
                    }
                    _ = rd_kafka_assign(client.pointer, nil)
                }
            case RD_KAFKA_EVENT_OFFSET_COMMIT:
                let err = rd_kafka_event_error(event)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET {
                    let reason = String(cString: rd_kafka_err2str(err))
                    commits.results.withLock {
                        $0.failures += 1
                        $0.lastError = reason
                    }
                }
                if let list = rd_kafka_event_topic_partition_list(event) {
                    var done: [TopicPartition: Int64] = [:]
                    for i in 0..<Int(list.pointee.cnt) where list.pointee.elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && list.pointee.elems[i].offset >= 0 {
                        let entry = list.pointee.elems[i]
                        done[TopicPartition(topic: String(cString: entry.topic), partition: entry.partition)] = entry.offset
                    }
                    commits.results.withLock { $0.committed.merge(done) { max($0, $1) } }
                }
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

    /// Stores these offsets (the next offset to read, per owned partition) for librdkafka to commit.
    public func store(_ offsets: [TopicPartitionOffset]) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let list = makePartitionList(offsets)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_offsets_store(client.pointer, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "store offsets") }
        for i in 0..<Int(list.pointee.cnt) where list.pointee.elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR {
            let entry = list.pointee.elems[i]
            throw KafkaError(entry.err, context: "store offset of \(String(cString: entry.topic))/\(entry.partition)")
        }
    }

    /// Leaves the group at once (so its partitions move without waiting out a session); `onRevoke` runs for
    /// the partitions taken away on the way out, before they are given back (and their stored offsets committed).
    /// Gives up after `closeTimeout` (default 10 s). Safe to call more than once.
    public func leave(closeTimeout: Duration = .seconds(10), onRevoke: (Set<TopicPartition>, Bool) async -> Void) async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let client = self.client
        let queue = self.queue
        let commits = self.commits
        let started = await blocking { () -> Bool in
            guard let error = rd_kafka_consumer_close_queue(client.pointer, queue.pointer) else { return true }
            rd_kafka_error_destroy(error)
            return false
        }
        if started {
            // Bounded, so that shutdown fits the pod's grace period whatever the group does; after it, the group
            // notices the member's absence when its session expires.
            let deadline = ContinuousClock.now + closeTimeout
            while await blocking({ rd_kafka_consumer_closed(client.pointer) == 0 }) {
                guard ContinuousClock.now < deadline else {
                    client.skipConsumerClose.store(true, ordering: .releasing)
                    client.status.logger.warning("leaving the consumer group did not finish in time; the group notices at the session timeout")
                    return
                }
                for change in await blocking({ [commits] in Self.serve(queue, client: client, commits: commits, timeoutMs: 100) }) {
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
        // librdkafka 2.0.2 (Debian 12's) aborts destroying a cooperative-sticky member that never had an assignment
        // (rd_kafka_sticky_assignor_state_destroy asserts the state it never made; later versions check). Such a
        // handle is left to the process's exit instead: a replica stopped before its first assignment.
        if !client.wasAssigned.load(ordering: .acquiring) { client.abandon() }
    }
}

/// Commit results, shared with the blocking calls that serve librdkafka's queue.
final class CommitTracker: Sendable {
    let results = Mutex(KafkaGroupMembership.CommitResults())
}

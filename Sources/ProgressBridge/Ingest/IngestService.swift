import DequeModule
import Foundation
import Kafka
import Logging
import ProgressAggregation
import ProgressContract
import ServiceLifecycle
import Synchronization

/// Kafka in → contract → aggregation, on every replica alike.
///
/// **Every replica reads every input partition** (`KafkaPartitionReader`) and applies every valid event to its
/// own store, so any replica can serve any job, and — since a message's `seq` is its event's input offset + 1 —
/// with the same `seq`s everywhere. **One replica owns each partition** (`KafkaGroupMembership`, cooperative-sticky)
/// and only the owner has side effects for it: it dead-letters the partition's invalid events, checkpoints its
/// jobs to the state topic and commits its offsets — each once per event, never duplicated by the others.
///
/// - On assignment, the new owner takes over from the offset the previous owner committed: events it read since
///   then as a mere reader and rejected are dead-lettered now (read again from Kafka), and the jobs they changed
///   are checkpointed with the next interval. If it has not read that far yet, it acts as owner from there on.
/// - On revocation it checkpoints and commits what it handled, then gives the partition back (nothing is
///   committed for a partition it already lost). It keeps reading and serving the partition's jobs.
/// - At-least-once: an offset is committed only after its event's dead letter is acknowledged and the state that
///   contains it is written.
public struct IngestService: Service {
    /// Where job state is restored from and checkpointed to; `nil`: state lives in memory only (offsets are
    /// still committed by the owner).
    public struct Durability: Sendable {
        let changelog: StateChangelog
        let bootstrapServers: String
        let properties: KafkaProperties

        public init(changelog: StateChangelog, bootstrapServers: String, properties: KafkaProperties) {
            self.changelog = changelog
            self.bootstrapServers = bootstrapServers
            self.properties = properties
        }
    }

    let reader: KafkaPartitionReader
    let membership: KafkaGroupMembership
    let deadLetterProducer: KafkaProducer
    let deadLetterTopic: String
    let decoder: EventDecoder
    let store: JobStore
    let metrics: BridgeMetrics
    let readiness: Readiness
    let logger: Logger
    let durability: Durability?
    /// How often the owner writes snapshots and commits offsets. Default 1 s.
    let checkpointInterval: Duration
    /// How long failing dead-letter writes may hold ingest before the bridge says it is not ready.
    static let deadLetterStallLimit = Duration.seconds(60)
    /// How long a partition given back may wait for librdkafka's report that its last offsets were committed.
    static let handoverCommitWait = Duration.seconds(10)
    /// Rejections a replica remembers per partition it does not own, for when it takes the partition over.
    static let rememberedRejectionsPerPartition = 10_000

    /// How far `occurred_at` may be ahead of the record's timestamp, in ms (further: `implausible_timestamp`).
    let maxClockSkewMs: Int64
    /// The largest dead-letter record (key, value and headers), in bytes; larger originals are truncated.
    let deadLetterMaxBytes: Int

    public init(
        reader: KafkaPartitionReader, membership: KafkaGroupMembership, deadLetterProducer: KafkaProducer, deadLetterTopic: String,
        decoder: EventDecoder, store: JobStore, metrics: BridgeMetrics, readiness: Readiness, logger: Logger, durability: Durability? = nil,
        checkpointInterval: Duration = .seconds(1), maxClockSkewMs: Int64 = 3_600_000, deadLetterMaxBytes: Int = 900_000
    ) {
        self.reader = reader
        self.membership = membership
        self.deadLetterProducer = deadLetterProducer
        self.deadLetterTopic = deadLetterTopic
        self.decoder = decoder
        self.store = store
        self.metrics = metrics
        self.readiness = readiness
        self.logger = logger
        self.durability = durability
        self.checkpointInterval = checkpointInterval
        self.maxClockSkewMs = maxClockSkewMs
        self.deadLetterMaxBytes = deadLetterMaxBytes
    }

    var topics: [String] { membership.configuration.topics }

    /// What handling one message did.
    enum Handled {
        /// Fully handled.
        case done
        /// Shutdown interrupted a dead-letter retry: the position must not advance.
        case interrupted
    }

    public func run() async throws {
        // Start-up (restoring the state topic) is not a stall: the clock of the commits alert starts now.
        metrics.lastCommit.set(Double(WallClock.nowMs()) / 1000)
        guard var partitions = await start() else { return }
        try membership.join()
        logger.info("consuming", metadata: ["topics": "\(topics.joined(separator: ","))", "group": "\(membership.configuration.groupId)"])
        var lastLagUpdate = ContinuousClock.now
        var lastCheckpoint = ContinuousClock.now
        var lastPrune = ContinuousClock.now
        // Two stages on two cores: while one batch is applied here, the next ones are read and decoded (parsed and
        // validated: pure, and nearly half the cost of an event) beside it. And a periodic checkpoint's write (tens
        // of ms waiting for Kafka) goes on beside ingest, which would otherwise hold every event back meanwhile.
        await withTaskGroup(of: Result<Int, any Error>.self) { writes in
            var writing: PreparedCheckpoint?
            let written = WrittenFlag()
            /// Finishes the checkpoint being written, waiting for it if `wait` (before a rebalance is acted on, before
            /// another checkpoint, at shutdown: offsets are stored in order, and never for a partition given back).
            func settle(wait: Bool) async {
                guard let prepared = writing, wait || written.isSet, let result = await writes.next() else { return }
                finishCheckpoint(&partitions, prepared, result)
                writing = nil
            }
            // The reading stage, up to a few batches ahead of this one (a rebalance is acted on before the next batch
            // is applied: the records read ahead are only data until then).
            let handoff = BatchHandoff<DecodedBatch>(capacity: Self.batchesReadAhead, byteCapacity: Self.bytesReadAhead, bytesOf: \.valueBytes)
            await withDiscardingTaskGroup { stages in
                stages.addTask {
                    while !Task.isShuttingDownGracefully && !Task.isCancelled {
                        // Reads only once the batch can be handed over at once, so that no more batches are held than
                        // the handoff's capacity and the one being applied.
                        guard await handoff.waitForRoom(), await handoff.send(await readAndDecode()) else { break }
                    }
                    handoff.close()
                }
                defer { handoff.close() }
                while !Task.isShuttingDownGracefully && !Task.isCancelled, var next = await handoff.receive() {
                    if Task.isShuttingDownGracefully { break }  // (it may have come while this loop waited)
                    // Moved out of the batch (a second reference to the records would make the first `popLast` copy them all).
                    var batch: [Decoded] = []
                    swap(&batch, &next.records)
                    let changes = await membership.poll()
                    if !changes.isEmpty { await settle(wait: true) }
                    for change in changes {
                        await apply(change, to: &partitions)
                    }
                    // The records are taken off the batch's end (it holds them last first), each moved out, not copied: a
                    // copy retained and released each of the record's fields and its event's. A run of one partition's
                    // records goes under one look-up of its progress, up to one that is rejected: that one (rare) is
                    // handled on its own, since a dead letter waits for Kafka.
                    while !Task.isShuttingDownGracefully, let first = batch.popLast() {  // (the rest is read again by the next owner)
                        let partition = TopicPartition(topic: first.message.topic, partition: first.message.partition)
                        let offset = first.message.offset
                        batch.append(first)  // back (moved): the run starts with it
                        let rejected = partitions.update(partition, default: PartitionProgress(position: offset)) {
                            acceptRun(of: partition, from: &batch, &$0)
                        }
                        guard let (message, rejection) = rejected else { continue }
                        guard case .done = await reject(message, rejection, &partitions[partition, default: PartitionProgress(position: message.offset)]) else { break }
                        partitions[partition]?.position = message.offset + 1
                    }
                    // The reader's positions cover the batch: readiness may go by them once all of it is applied.
                    if batch.isEmpty { partitions.markCaughtUp(next.fetched) }
                    // So that a resume from a replica further ahead can be told from a made-up last_seq (cheap: cached).
                    store.updateHighWatermarks(reader.highWatermarks(of: partitions.all))
                    if !readiness.isIngestRunning, partitions.isCaughtUp {
                        readiness.ingestStarted(status: reader.status)
                        logger.info("caught up with the input topics: ready")
                    }
                    await settle(wait: false)
                    if writing == nil, ContinuousClock.now - lastCheckpoint >= checkpointInterval {
                        store.evictExpired()
                        if let prepared = prepareCheckpoint(&partitions, partitions.owned) {
                            writing = prepared
                            written.reset()
                            writes.addTask {
                                defer { written.set() }
                                return await writeCheckpoint(prepared)
                            }
                        }
                        lastCheckpoint = .now
                    }
                    metrics.kafkaUp.set(reader.status.allBrokersDown ? 0.0 : 1.0)
                    if ContinuousClock.now - lastLagUpdate > .seconds(2) {
                        lastLagUpdate = .now
                        for lag in reader.lags(positions: partitions.positions) {
                            if let value = lag.lag { metrics.setLag(topic: lag.topic, partition: lag.partition, lag: value) }
                        }
                        for broker in reader.status.brokers {
                            if let rtt = broker.meanRoundTripSeconds { metrics.setBrokerRoundTrip(broker: broker.nodeId, seconds: rtt) }
                        }
                    }
                    reportHandovers(&partitions, final: false)
                    if ContinuousClock.now - lastPrune > .seconds(10) {
                        lastPrune = .now
                        await pruneRememberedRejections(&partitions)
                    }
                }
            }
            await settle(wait: true)
        }
        readiness.ingestStopped()
        await checkpoint(&partitions, partitions.owned)
        // Leaving the group hands this replica's partitions over at once; each is checkpointed and committed first.
        await membership.leave { revoked, lost in
            await apply(.revoked(revoked, lost: lost), to: &partitions, acknowledge: false)
        }
        reportHandovers(&partitions, final: true)
        await reader.close()
        logger.info("left the group; reader closed")
    }

    /// Restores the state topic and starts reading every input partition from its committed offset. Returns
    /// `nil` if shutdown came first.
    private func start() async -> Partitions? {
        while true {
            do {
                try await checkTopics()
                let all = try await reader.partitions(of: topics)
                store.setPartitionCount(all.count)
                metrics.inputPartitions.set(Double(all.count))
                // Committed offsets first, state second: the state topic's end then covers at least every committed
                // offset (owners write state before they commit); what it covers beyond is recognised by offset.
                let committed = try await membership.committed(all)
                if let durability {
                    _ = try await StateChangelog.restore(
                        into: store, bootstrapServers: durability.bootstrapServers, topic: durability.changelog.topic,
                        properties: durability.properties, limits: store.limits.aggregate, logger: logger)
                }
                var starts: [TopicPartition: Int64] = [:]
                for partition in all {
                    if let offset = committed[partition] {
                        starts[partition] = offset
                    } else {
                        starts[partition] = try await reader.lowWatermark(partition)
                    }
                }
                try await reader.assign(starts.map { TopicPartitionOffset(topic: $0.key.topic, partition: $0.key.partition, offset: $0.value) })
                let ends = try await reader.highWatermarks(all)
                store.updateHighWatermarks(ends)
                logger.info(
                    "reading every input partition", metadata: ["partitions": "\(all.count)", "behind": "\(ends.reduce(0) { $0 + max(0, $1.value - (starts[$1.key] ?? 0)) })"])
                readiness.startupBlocked(nil)
                return Partitions(starts: starts, ends: ends)
            } catch {
                logger.error("cannot start ingest; retrying", metadata: ["error": "\(error)"])
                readiness.startupBlocked("\(error)")
                if Task.isShuttingDownGracefully || Task.isCancelled { return nil }
                try? await Task.sleep(for: .seconds(2))
            }
        }
    }

    /// The topics must exist (the bridge does not create topics), and the state topic must be compacted — checked
    /// where the cluster lets the bridge read topic configurations. Throws what is wrong, precisely.
    private func checkTopics() async throws {
        let stateTopic = durability?.changelog.topic
        let needed = topics + [deadLetterTopic] + (stateTopic.map { [$0] } ?? [])
        let missing = try await reader.missingTopics(needed)
        guard missing.isEmpty else {
            throw StartupError(
                "the cluster has no topic \(missing.joined(separator: ", ")); the bridge does not create topics: create them (deploy/kubernetes/topics, or the kafka-topics.sh commands in deploy/README.md)")
        }
        switch await reader.topicConfigs([deadLetterTopic] + (stateTopic.map { [$0] } ?? [])) {
        case .failure(let error):
            logger.notice("topic configurations not readable here; the state topic's cleanup.policy is not checked", metadata: ["error": "\(error)"])
        case .success(let configs):
            let verdict = TopicConfigCheck(stateTopic: stateTopic, deadLetterTopic: deadLetterTopic, deadLetterMaxBytes: deadLetterMaxBytes).verdict(configs)
            if let problem = verdict.problem { throw StartupError(problem) }
            for warning in verdict.warnings { logger.warning("\(warning)") }
            logger.info("topics checked", metadata: ["topics": "\(needed.joined(separator: ","))"])
        }
    }

    /// Acts on a rebalance step, then acknowledges it to the group.
    private func apply(_ change: KafkaGroupMembership.Change, to partitions: inout Partitions, acknowledge: Bool = true) async {
        switch change {
        case .assigned(let assigned):
            if acknowledge { await membership.acknowledge(change) }
            // Where the previous owners stopped. Without it this replica could act as owner from too early (writing
            // older state over newer, dead-lettering again): it keeps asking; on shutdown it never acts as owner.
            var committed: [TopicPartition: Int64]?
            var failures = 0
            while committed == nil, !Task.isShuttingDownGracefully, !Task.isCancelled {
                do {
                    committed = try await membership.committed(assigned)
                } catch {
                    failures += 1
                    if failures <= 3 || failures % 30 == 0 {
                        logger.error("cannot read the committed offsets of assigned partitions; retrying", metadata: ["error": "\(error)"])
                    }
                    try? await Task.sleep(for: .seconds(1))
                }
            }
            guard let committed else { return }
            for partition in assigned.sorted(by: { ($0.topic, $0.partition) < ($1.topic, $1.partition) }) {
                await takeOver(partition, from: committed[partition] ?? partitions[partition]?.start ?? 0, &partitions)
            }
            metrics.partitionsOwned.set(Double(partitions.owned.count))
            logger.info("partitions assigned", metadata: ["partitions": "\(describe(assigned))", "owned": "\(describe(partitions.owned))"])
        case .revoked(let revoked, let lost):
            if lost {
                logger.warning("partitions lost (this replica was out of the group): nothing is committed for them", metadata: ["partitions": "\(describe(revoked))"])
            } else {
                // The next owner starts where this checkpoint ends: try hard (within the rebalance) to write it.
                for attempt in 1...3 {
                    if await checkpoint(&partitions, revoked) || Task.isCancelled { break }
                    logger.warning("checkpoint of revoked partitions failed; retrying", metadata: ["attempt": "\(attempt)"])
                    try? await Task.sleep(for: .milliseconds(500))
                }
            }
            let committed = membership.commitResults.committed
            for partition in revoked {
                guard let progress = partitions[partition], let ownedFrom = progress.ownedFrom else { continue }
                if !lost {
                    partitions.handovers.append(Handover(partition: partition, committed: max(committed[partition] ?? ownedFrom, ownedFrom), handled: progress.position, at: .now))
                }
                partitions[partition]?.ownedFrom = nil
            }
            if acknowledge { await membership.acknowledge(change) }
            metrics.partitionsOwned.set(Double(partitions.owned.count))
            logger.info("partitions revoked", metadata: ["partitions": "\(describe(revoked))", "owned": "\(describe(partitions.owned))"])
        }
    }

    /// Says out loud which partitions were given back without their last offsets committed (librdkafka commits them
    /// on the way out; the group refuses a commit in the middle of a rebalance): their next owner starts from the
    /// earlier commit and dead-letters again what this replica dead-lettered in between — at-least-once.
    /// `final`: this replica is leaving; no commit result arrives any more.
    private func reportHandovers(_ partitions: inout Partitions, final: Bool) {
        guard !partitions.handovers.isEmpty else { return }
        let committed = membership.commitResults
        partitions.handovers.removeAll { handover in
            if max(committed.committed[handover.partition] ?? -1, handover.committed) >= handover.handled { return true }
            guard final || ContinuousClock.now - handover.at > Self.handoverCommitWait else { return false }
            logger.warning("partition handed over without its last offsets committed: its next owner repeats the dead letters in between", metadata: [
                "partition": "\(describe([handover.partition]))", "committed": "\(handover.committed)", "handled": "\(handover.handled)",
                "error": "\(committed.lastError ?? "no commit result")",
            ])
            metrics.handoversUncommitted.increment()
            return true
        }
    }

    /// Becomes the owner of `partition` from offset `from` (what the previous owner committed): dead-letters the
    /// events this replica rejected since then while it only read them, and owes the state topic the tombstones of
    /// jobs it forgot meanwhile. The jobs changed meanwhile are still marked for the next checkpoint (a reader
    /// never clears those marks). Only once the owed dead letters are acknowledged does it act as owner (store
    /// offsets); shutdown before that leaves the partition to the next owner.
    private func takeOver(_ partition: TopicPartition, from: Int64, _ partitions: inout Partitions) async {
        guard var progress = partitions[partition] else {
            logger.warning("assigned a partition this replica does not read (added after it started?)", metadata: ["partition": "\(describe([partition]))"])
            return
        }
        let owed = progress.rejections.filter { $0.offset >= from && $0.offset < progress.position }
        if progress.rejectionsForgottenThrough >= from {
            metrics.handoverDeadLettersMissed.increment(by: Int64(progress.rejectionsForgottenThrough - from + 1))
            logger.error(
                "more events of this partition were rejected while it had no owner than a replica remembers; the oldest are not dead-lettered",
                metadata: ["partition": "\(describe([partition]))", "from": "\(from)", "through": "\(progress.rejectionsForgottenThrough)"])
        }
        if let first = owed.first?.offset, let last = owed.last?.offset {
            let byOffset = Dictionary(owed.map { ($0.offset, $0.rejection) }, uniquingKeysWith: { a, _ in a })
            var next = first
            var failures = 0
            while next <= last {
                if Task.isShuttingDownGracefully || Task.isCancelled { return }
                do {
                    // The reader's own copies are gone; read the records back (Kafka keeps them) with a reader of their own.
                    let rereader = try KafkaPartitionReader(
                        bootstrapServers: membership.configuration.bootstrapServers, properties: membership.configuration.properties, logger: logger)
                    var interrupted = false
                    do {
                        try await rereader.read(partition, from: next, to: last + 1) { message in
                            guard !interrupted else { return }
                            if let rejection = byOffset[message.offset] {
                                guard await deadLetter(message, rejection) else {
                                    interrupted = true
                                    return
                                }
                            }
                            next = message.offset + 1
                        }
                    } catch {
                        await rereader.close()
                        throw error
                    }
                    await rereader.close()
                    if interrupted { return }
                    next = last + 1
                } catch {
                    failures += 1
                    logger.error("cannot read back rejected events after a takeover; retrying", metadata: ["error": "\(error)", "partition": "\(describe([partition]))"])
                    try? await Task.sleep(for: .seconds(min(failures, 5)))
                }
            }
            logger.info("took over: dead-lettered what was rejected since the last commit", metadata: ["partition": "\(describe([partition]))", "dead_letters": "\(owed.count)"])
        }
        progress.rejections.removeAll()
        // Tombstones: duplicates are harmless, and a job started afresh since is rewritten after them (its change marks
        // are still set), so all the remembered ones are written.
        progress.forgotten += progress.forgottenAsReader
        progress.forgottenAsReader.removeAll()
        progress.ownedFrom = from
        progress.committed = nil
        progress.stored.removeAll()
        progress.confirmedAt = WallClock.nowMs()
        partitions[partition] = progress
    }

    /// Writes the state of the jobs changed in `which` partitions (those this replica owns and has read as far as
    /// their previous owner had), then stores their positions for librdkafka to commit: a committed offset never
    /// runs ahead of the state.
    @discardableResult
    private func checkpoint(_ partitions: inout Partitions, _ which: Set<TopicPartition>) async -> Bool {
        guard let prepared = prepareCheckpoint(&partitions, which) else { return false }
        return finishCheckpoint(&partitions, prepared, await writeCheckpoint(prepared))
    }

    /// Takes a checkpoint of `which` partitions: the jobs changed in them, the jobs forgotten, and the positions the
    /// state will cover (stored for commit once it is written). The partitions' change marks are taken with it and
    /// given back if the write fails. `nil` when this replica is out of the group.
    private func prepareCheckpoint(_ partitions: inout Partitions, _ which: Set<TopicPartition>) -> PreparedCheckpoint? {
        // Out of the group (a stall past max.poll.interval.ms, a session lost): another replica may own these
        // partitions already; this one writes nothing until the group says what it owns.
        if membership.isAssignmentLost { return nil }
        let active = which.filter { partitions[$0]?.isActiveOwner ?? false }
        // Forgotten jobs: tombstones are the owner's business; readers keep them for a takeover.
        let owned = partitions.owned
        for job in store.takeForgotten() {
            guard let partition = job.partition else { continue }
            // A job started afresh since keeps its change mark: its new state is written after the tombstones.
            if store.read(job.jobId, { _ in true }) == nil { partitions[partition]?.dirtyJobs.remove(job.jobId) }
            if owned.contains(partition) {
                partitions[partition]?.forgotten.append(job)
            } else {
                partitions[partition]?.rememberForgotten(job, limit: Self.rememberedRejectionsPerPartition)
            }
        }
        var prepared = PreparedCheckpoint()
        for partition in active {
            guard let progress = partitions[partition] else { continue }
            prepared.dirty[partition] = progress.dirtyJobs
            prepared.forgotten[partition] = progress.forgotten
            if progress.position > progress.committed ?? -1 {
                prepared.due.append(TopicPartitionOffset(topic: partition.topic, partition: partition.partition, offset: progress.position))
            }
            partitions[partition]?.dirtyJobs.removeAll()
            partitions[partition]?.forgotten.removeAll()
        }
        return prepared
    }

    /// Writes a prepared checkpoint's state records: I/O only, so ingest may go on meanwhile (events applied
    /// meanwhile may be in the records too; restore recognises them by their offsets).
    private func writeCheckpoint(_ prepared: PreparedCheckpoint) async -> Result<Int, any Error> {
        let jobs = prepared.dirty.values.flatMap { $0 }
        let forgotten = prepared.forgotten.values.flatMap { $0 }
        guard let durability, !jobs.isEmpty || !forgotten.isEmpty else { return .success(0) }
        do {
            return .success(try await durability.changelog.write(jobs, forgotten: forgotten, from: store))
        } catch {
            return .failure(error)
        }
    }

    /// Stores the positions of a written checkpoint for commit (those of partitions still owned, while in the
    /// group), or gives its change marks back if the write failed. Returns whether it succeeded.
    @discardableResult
    private func finishCheckpoint(_ partitions: inout Partitions, _ prepared: PreparedCheckpoint, _ written: Result<Int, any Error>) -> Bool {
        do {
            metrics.stateRecordsWritten.increment(by: Int64(try written.get()))
            if membership.isAssignmentLost { return false }
            let due = prepared.due.filter { partitions[TopicPartition(topic: $0.topic, partition: $0.partition)]?.ownedFrom != nil }
            try membership.store(due)
            let now = WallClock.nowMs()
            for entry in due {
                let partition = TopicPartition(topic: entry.topic, partition: entry.partition)
                partitions[partition]?.committed = entry.offset
                partitions[partition]?.stored.append((entry.offset, now))
            }
            partitions.checkpointFailures = 0
            // The last checkpoint whose offsets librdkafka committed (it commits stored offsets every second), over the
            // partitions owned; one with nothing waiting is up to date now, and a replica that owns nothing has nothing
            // to commit.
            let commits = membership.commitResults
            var committedAt = now
            for p in partitions.owned {
                guard var progress = partitions[p], progress.isActiveOwner else {
                    committedAt = min(committedAt, partitions[p]?.confirmedAt ?? 0)
                    continue
                }
                progress.confirm(committedThrough: commits.committed[p] ?? -1, now: now)
                committedAt = min(committedAt, progress.confirmedAt)
                partitions[p] = progress
            }
            if committedAt > 0 { metrics.lastCommit.set(Double(committedAt) / 1000) }
            if commits.failures > partitions.commitFailuresSeen {
                metrics.checkpointFailures.increment(by: Int64(commits.failures - partitions.commitFailuresSeen))
                logger.warning("offset commits failed; librdkafka retries with the next", metadata: ["error": "\(commits.lastError ?? "")", "failures": "\(commits.failures)"])
                partitions.commitFailuresSeen = commits.failures
            }
            return true
        } catch {
            metrics.checkpointFailures.increment()
            partitions.checkpointFailures += 1
            // The store's change marks were given back by the changelog; the partitions get theirs back here: the
            // next interval retries.
            if case .failure = written {
                for (partition, jobs) in prepared.dirty { partitions[partition]?.dirtyJobs.formUnion(jobs) }
                for (partition, jobs) in prepared.forgotten { partitions[partition]?.forgotten.insert(contentsOf: jobs, at: 0) }
            }
            if partitions.checkpointFailures <= 3 || partitions.checkpointFailures % 60 == 0 {
                logger.error("checkpoint failed; offsets stay uncommitted", metadata: ["error": "\(error)", "failures": "\(partitions.checkpointFailures)"])
            }
            return false
        }
    }

    /// Drops remembered rejections of other owners' partitions that their owner has committed past.
    private func pruneRememberedRejections(_ partitions: inout Partitions) async {
        let remembering = partitions.all.filter { !(partitions[$0]?.rejections.isEmpty ?? true) && !partitions.owned.contains($0) }
        guard !remembering.isEmpty, let committed = try? await membership.committed(remembering, timeoutMs: 5_000) else { return }
        for (partition, offset) in committed {
            partitions[partition]?.rejections.removeAll { $0.offset < offset }
        }
    }

    /// The record's W3C trace context, when it has a well-formed one (anything else is dropped).
    static func traceparent(of message: KafkaMessage) -> String? {
        message.headers.first { $0.name == "traceparent" }?.value.flatMap { TraceParent.parse($0) }
    }

    /// A record and its decoding (parsed and validated against the contract).
    struct Decoded: Sendable {
        var message: KafkaMessage
        var decoded: Result<ProgressEvent, Rejection>
    }

    /// Records read, each with its decoding, and where librdkafka's positions were then.
    struct DecodedBatch: Sendable {
        /// **Last first**, so that each is taken off the end: moved, not copied.
        var records: [Decoded]
        /// librdkafka's positions right after the read: they cover these records and no more (readiness goes by them
        /// once the records are applied).
        var fetched: [TopicPartition: Int64]
        /// The bytes of the records' values.
        var valueBytes: Int
    }

    /// How many decoded batches the reading stage may be ahead of the applying one.
    static let batchesReadAhead = 4
    /// How many bytes of records (their values) it may be ahead, at most: a batch may hold 500 records of up to the
    /// broker's record size each (a megabyte by default), and every record keeps its value for a dead letter.
    static let bytesReadAhead = 32 << 20

    /// The next records, decoded.
    private func readAndDecode() async -> DecodedBatch {
        var messages = await reader.poll()
        let fetched = reader.positions()
        var decoded: [Decoded] = []
        decoded.reserveCapacity(messages.count)
        var valueBytes = 0
        while let message = messages.popLast() {
            valueBytes += message.value.count
            let result = decoder.decode(message.value)
            decoded.append(Decoded(message: message, decoded: result))
        }
        return DecodedBatch(records: decoded, fetched: fetched, valueBytes: valueBytes)
    }

    /// Accepts the records of `partition` off the end of `batch` (which holds them last first), up to the first of
    /// another partition (left in `batch`) or the first rejected (taken off and returned; its position is not advanced).
    private func acceptRun(of partition: TopicPartition, from batch: inout [Decoded], _ progress: inout PartitionProgress) -> (KafkaMessage, Rejection)? {
        while let record = batch.popLast() {
            guard record.message.partition == partition.partition, record.message.topic == partition.topic else {
                batch.append(record)
                return nil
            }
            if let rejection = accept(record.message, record.decoded, &progress) { return (record.message, rejection) }
            progress.position = record.message.offset + 1
        }
        return nil
    }

    /// Handles a message as far as it can without waiting: a valid event is applied (or recognised as a duplicate).
    /// Returns why the message is rejected otherwise (`reject` handles it then).
    func accept(_ message: KafkaMessage, _ decoded: Result<ProgressEvent, Rejection>, _ progress: inout PartitionProgress) -> Rejection? {
        switch decoded {
        case .failure(let refused):
            metrics.eventsUnparsed.increment()
            return refused
        case .success(let event):
            metrics.consumed(event.type).increment()
            // An event from the far future would win "latest event wins" for ever; the record's own timestamp is
            // the reference — not the bridge's clock: every replica must decide alike, whenever it reads the record.
            // (A producer sets the record timestamp too; `message.timestamp.type=LogAppendTime` on the topic makes
            // it the broker's.)
            if let reference = message.timestampMs, reference > 0, event.occurredAt > reference.adding(saturating: maxClockSkewMs) {
                return Rejection(
                    .implausibleTimestamp,
                    "occurred_at is \(event.occurredAt.subtracting(saturating: reference) / 1000) s ahead of the record's timestamp; at most \(maxClockSkewMs / 1000) s (--max-clock-skew)")
            }
            let origin = EventOrigin(partition: TopicPartition(topic: message.topic, partition: message.partition), offset: message.offset)
            let traceparent = Self.traceparent(of: message)
            switch store.apply(event, at: origin, traceparent: traceparent) {
            case .applied:
                progress.dirtyJobs.insert(event.jobId)
                logger.debug(
                    "event applied",
                    metadata: [
                        "job_id": "\(event.jobId)", "type": "\(event.type.rawValue)", "partition": "\(message.partition)", "offset": "\(message.offset)",
                        "traceparent": "\(traceparent ?? "")",
                    ])
                return nil
            case .duplicate:
                metrics.duplicates.increment()
                return nil
            case .rejected(let refused):
                return refused
            }
        }
    }

    /// Handles a rejected message: the partition's owner dead-letters it (and waits for the acknowledgement); any
    /// other replica remembers it, for a takeover.
    func reject(_ message: KafkaMessage, _ rejection: Rejection, _ progress: inout PartitionProgress) async -> Handled {
        // Every replica counts what it found invalid (as it counts what it read); only the owner writes the dead letter.
        metrics.eventsInvalid[rejection.reason]?.increment()
        if progress.ownsSideEffects(at: message.offset) {
            if await deadLetter(message, rejection) { return .done }
            // Shutdown: the position stays (the next owner reads the event again). Otherwise the assignment was lost:
            // this replica only reads the partition now, and remembers the rejection as a reader does — skipping the
            // rest of the batch would leave its store behind the others'.
            if Task.isShuttingDownGracefully || Task.isCancelled { return .interrupted }
        }
        progress.remember(message.offset, rejection, limit: Self.rememberedRejectionsPerPartition)
        return .done
    }

    /// Writes the rejected event to the dead-letter topic, retrying until the broker acknowledges it.
    /// Returns false only if shutdown interrupted the retries. A value too large for a record is written
    /// truncated (and marked so). An error Kafka will keep giving (not authorised, too large, no such topic)
    /// marks the bridge not ready and is counted; ingest holds — nothing is skipped — until it is fixed.
    func deadLetter(_ message: KafkaMessage, _ rejection: Rejection) async -> Bool {
        var metadata: Logger.Metadata = [
            "reason": "\(rejection.reason.rawValue)", "detail": "\(rejection.detail.prefix(300))",
            "topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)",
        ]
        if let traceparent = Self.traceparent(of: message) { metadata["traceparent"] = "\(traceparent)" }
        logger.notice("event rejected", metadata: metadata)
        let record = DeadLetter.record(for: message, rejection: rejection, topic: deadLetterTopic, maxBytes: deadLetterMaxBytes)
        if record.truncated { metrics.deadLettersTruncated.increment() }
        var backoff = Duration.milliseconds(100)
        var blocked = false
        let firstAttempt = ContinuousClock.now
        var shutdownSeen: ContinuousClock.Instant?
        // Once handed to the producer, a dead letter may still be delivered: on shutdown wait a little for its report
        // (so that the next owner does not write it again), but never let a broken topic hold shutdown up; nor keep
        // writing for a partition this replica has lost.
        func abandon() -> Bool {
            if membership.isAssignmentLost { return true }
            guard Task.isShuttingDownGracefully else { return false }
            let seen = shutdownSeen ?? ContinuousClock.now
            shutdownSeen = seen
            return ContinuousClock.now - seen > .seconds(5)
        }
        while true {
            do {
                try await deadLetterProducer.sendAll([record.record], abandonIf: abandon)
                metrics.eventsDeadLettered.increment()
                if blocked {
                    readiness.deadLettersBlocked(nil)
                    logger.notice("dead-letter topic accepts writes again; ingest continues")
                }
                return true
            } catch {
                metrics.deadLetterFailures.increment()
                // A delivery that timed out may hide a refusal the cluster only states in its metadata.
                var cause = error
                if !error.isPermanentForProduce, let topicError = await deadLetterProducer.topicError(deadLetterTopic) { cause = topicError }
                let heldFor = ContinuousClock.now - firstAttempt
                if cause.isPermanentForProduce {
                    metrics.deadLetterPermanentFailures.increment()
                    logger.error(
                        "dead-letter topic refuses the record; ingest holds and the bridge is not ready until this is fixed",
                        metadata: ["error": "\(cause)", "topic": "\(deadLetterTopic)", "source_offset": "\(message.offset)", "retry_in": "\(backoff)"])
                } else {
                    logger.error("dead-letter write failed; retrying, offset not stored", metadata: ["error": "\(error)", "retry_in": "\(backoff)"])
                }
                // Not ready while ingest is held: at once for a refusal, after a while for anything else.
                if !blocked, cause.isPermanentForProduce || heldFor >= Self.deadLetterStallLimit {
                    readiness.deadLettersBlocked(cause.message)
                    blocked = true
                }
            }
            if Task.isShuttingDownGracefully || Task.isCancelled || membership.isAssignmentLost { return false }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    private func describe(_ partitions: some Collection<TopicPartition>) -> String {
        partitions.sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }.map { "\($0.topic)/\($0.partition)" }.joined(separator: ",")
    }
}

/// One input partition as this replica sees it.
struct PartitionProgress {
    /// Where reading started.
    var start: Int64
    /// The next offset to handle.
    var position: Int64
    /// Set while this replica owns the partition: it dead-letters, checkpoints and commits for events from this
    /// offset on (the previous owner's commit; before it, the previous owner did).
    var ownedFrom: Int64?
    /// The last offset this replica stored for commit.
    var committed: Int64?
    /// Offsets stored and when, until librdkafka reports them committed.
    var stored = Deque<(offset: Int64, at: Int64)>()
    /// When the latest checkpoint librdkafka committed was taken (ms); now, when nothing waits.
    var confirmedAt: Int64 = 0
    /// Jobs changed since this replica last checkpointed them (kept by readers too, for a takeover).
    var dirtyJobs = Set<String>()
    /// Jobs forgotten (retention) whose tombstones are due.
    var forgotten: [ForgottenJob] = []
    /// Events rejected while this replica did not own the partition (oldest first), for a takeover.
    var rejections = Deque<(offset: Int64, rejection: Rejection)>()
    /// The latest offset of a remembered rejection dropped for room (-1: none).
    var rejectionsForgottenThrough: Int64 = -1
    /// Jobs forgotten (retention) while this replica did not own the partition, for a takeover (oldest first).
    var forgottenAsReader: [ForgottenJob] = []

    init(position: Int64) {
        self.start = position
        self.position = position
    }

    /// Owned, and read at least as far as the previous owner had handled: checkpoints and commits are due.
    var isActiveOwner: Bool { ownedFrom.map { position >= $0 } ?? false }

    /// Whether this replica dead-letters the event at `offset`.
    func ownsSideEffects(at offset: Int64) -> Bool { ownedFrom.map { offset >= $0 } ?? false }

    /// Drops the stored offsets librdkafka committed; the newest of them dates the last committed checkpoint.
    mutating func confirm(committedThrough offset: Int64, now: Int64) {
        while let first = stored.first, first.offset <= offset {
            confirmedAt = first.at
            stored.removeFirst()
        }
        if stored.isEmpty { confirmedAt = now }
    }

    mutating func rememberForgotten(_ job: ForgottenJob, limit: Int) {
        forgottenAsReader.append(job)
        if forgottenAsReader.count > limit { forgottenAsReader.removeFirst(forgottenAsReader.count - limit) }
    }

    mutating func remember(_ offset: Int64, _ rejection: Rejection, limit: Int) {
        rejections.append((offset, Rejection(rejection.reason, String(rejection.detail.prefix(300)))))
        if rejections.count > limit, let dropped = rejections.popFirst() { rejectionsForgottenThrough = dropped.offset }
    }
}

/// Whether the checkpoint being written is done (so that the loop only waits for it when it must).
final class WrittenFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
    func reset() { value.store(false, ordering: .releasing) }
}

/// A checkpoint taken from the partitions, being written.
struct PreparedCheckpoint: Sendable {
    /// The jobs changed, per partition (their marks, given back if the write fails).
    var dirty: [TopicPartition: Set<String>] = [:]
    /// The jobs forgotten, per partition: their tombstones are due.
    var forgotten: [TopicPartition: [ForgottenJob]] = [:]
    /// The positions the state covers once written: stored for commit then.
    var due: [TopicPartitionOffset] = []
}

/// A partition given back to the group, until its last stored offset is known committed.
struct Handover {
    var partition: TopicPartition
    /// What the group had committed before (as far as this replica knows).
    var committed: Int64
    /// Where this replica had read to (and dead-lettered up to) when it gave the partition back: a commit of it
    /// tells the next owner so.
    var handled: Int64
    var at: ContinuousClock.Instant
}

/// Every input partition this replica reads.
struct Partitions {
    private var entries: [TopicPartition: PartitionProgress]
    /// The high watermarks when reading started: ready once every partition is read that far.
    private var catchUpTargets: [TopicPartition: Int64]
    var checkpointFailures = 0
    /// Commit failures librdkafka reported that are already counted.
    var commitFailuresSeen = 0
    /// Partitions given back whose last stored offsets librdkafka has not yet reported committed.
    var handovers: [Handover] = []

    init(starts: [TopicPartition: Int64], ends: [TopicPartition: Int64]) {
        entries = starts.mapValues { PartitionProgress(position: $0) }
        catchUpTargets = ends.filter { $0.value > (starts[$0.key] ?? 0) }
    }

    // Changed in place (`_modify`): a get-and-set would copy the partition's progress for every event, and its
    // `dirtyJobs` set with it, once per event (its storage shared with the copy in the dictionary).
    subscript(partition: TopicPartition) -> PartitionProgress? {
        get { entries[partition] }
        _modify { yield &entries[partition] }
    }

    /// Changes `partition`'s progress in place (inserting `value` first if it has none), with one look-up.
    mutating func update<Result>(_ partition: TopicPartition, default value: @autoclosure () -> PartitionProgress, _ body: (inout PartitionProgress) -> Result) -> Result {
        body(&entries[partition, default: value()])
    }

    subscript(partition: TopicPartition, default value: @autoclosure () -> PartitionProgress) -> PartitionProgress {
        get { entries[partition] ?? value() }
        _modify { yield &entries[partition, default: value()] }
    }

    var all: Set<TopicPartition> { Set(entries.keys) }
    var owned: Set<TopicPartition> { Set(entries.filter { $0.value.ownedFrom != nil }.keys) }
    var positions: [TopicPartition: Int64] { entries.mapValues(\.position) }
    var isCaughtUp: Bool { catchUpTargets.isEmpty }

    /// Drops the catch-up targets reached — by handled records, or by librdkafka's own position (which also moves
    /// past records it never hands out, such as transaction markers).
    mutating func markCaughtUp(_ fetched: [TopicPartition: Int64]) {
        guard !catchUpTargets.isEmpty else { return }
        catchUpTargets = catchUpTargets.filter { partition, target in
            (entries[partition]?.position ?? 0) < target && (fetched[partition] ?? -1) < target
        }
    }
}

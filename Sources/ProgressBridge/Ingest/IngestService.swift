import Foundation
import Kafka
import Logging
import ProgressAggregation
import ProgressContract
import ServiceLifecycle

/// Kafka in → contract → aggregation: consumes events, applies valid ones to the store,
/// dead-letters the rest, and stores each offset only after its event is fully handled
/// (applied, or dead-lettered and acknowledged) — at-least-once.
public struct IngestService: Service {
    /// Where job state is restored from and checkpointed to; `nil`: offsets are committed by
    /// librdkafka in the background and state lives in memory only.
    public struct Durability: Sendable {
        let changelog: StateChangelog
        let bootstrapServers: String
        let properties: KafkaProperties
        /// How often snapshots are written and offsets committed. Default 1 s.
        var interval: Duration = .seconds(1)
        /// Finished jobs are forgotten (memory and state topic) this long after they finished. Default 24 h.
        var finishedJobRetention: Duration
        /// Jobs that never finish (their monitor died) are forgotten this long after their last change. Default 7 days.
        var idleJobRetention: Duration
        /// Bounds applied to restored jobs.
        var limits: AggregateLimits

        public init(
            changelog: StateChangelog, bootstrapServers: String, properties: KafkaProperties, finishedJobRetention: Duration = .seconds(86_400),
            idleJobRetention: Duration = .seconds(604_800), limits: AggregateLimits = .init()
        ) {
            self.limits = limits
            self.changelog = changelog
            self.bootstrapServers = bootstrapServers
            self.properties = properties
            self.finishedJobRetention = finishedJobRetention
            self.idleJobRetention = idleJobRetention
        }
    }

    let consumer: KafkaConsumer
    let deadLetterProducer: KafkaProducer
    let deadLetterTopic: String
    let decoder: EventDecoder
    let store: JobStore
    let metrics: BridgeMetrics
    let readiness: Readiness
    let logger: Logger
    let durability: Durability?
    /// How long failing dead-letter writes may hold ingest before the bridge says it is not ready.
    static let deadLetterStallLimit = Duration.seconds(60)

    /// How far `occurred_at` may be ahead of the record's timestamp, in ms (further: `implausible_timestamp`).
    let maxClockSkewMs: Int64
    /// The largest dead-letter record (key, value and headers), in bytes; larger originals are truncated.
    let deadLetterMaxBytes: Int

    public init(
        consumer: KafkaConsumer, deadLetterProducer: KafkaProducer, deadLetterTopic: String, decoder: EventDecoder,
        store: JobStore, metrics: BridgeMetrics, readiness: Readiness, logger: Logger, durability: Durability? = nil,
        maxClockSkewMs: Int64 = 3_600_000, deadLetterMaxBytes: Int = 900_000
    ) {
        self.maxClockSkewMs = maxClockSkewMs
        self.deadLetterMaxBytes = deadLetterMaxBytes
        self.consumer = consumer
        self.deadLetterProducer = deadLetterProducer
        self.deadLetterTopic = deadLetterTopic
        self.decoder = decoder
        self.store = store
        self.metrics = metrics
        self.readiness = readiness
        self.logger = logger
        self.durability = durability
    }

    /// What handling one message did.
    enum Handled {
        /// Fully handled; the job it changed, if any.
        case done(changedJob: String?)
        /// Shutdown interrupted a dead-letter retry: the offset must not advance.
        case interrupted
    }

    /// Offsets handled but not yet committed, and jobs changed since the last checkpoint.
    struct Checkpoint {
        var offsets: [String: TopicPartitionOffset] = [:]
        var dirtyJobs = Set<String>()
        var forgottenJobs: [(jobId: String, videoIds: [String])] = []
        var failures = 0
    }

    public func run() async throws {
        var checkpoint = Checkpoint()
        if let durability {
            // Not ready (and not consuming) until every job's last snapshot is back.
            while true {
                do {
                    _ = try await StateChangelog.restore(
                        into: store, bootstrapServers: durability.bootstrapServers, topic: durability.changelog.topic,
                        properties: durability.properties, limits: durability.limits, logger: logger)
                    break
                } catch {
                    logger.error("state restore failed; retrying", metadata: ["error": "\(error)"])
                    if Task.isShuttingDownGracefully || Task.isCancelled { return }
                    try? await Task.sleep(for: .seconds(2))
                }
            }
        }
        readiness.ingestStarted(status: consumer.status)
        logger.info("consuming", metadata: ["topics": "\(consumer.configuration.topics.joined(separator: ","))", "group": "\(consumer.configuration.groupId)"])
        var lastLagUpdate = ContinuousClock.now
        var lastCheckpoint = ContinuousClock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let batch = await consumer.poll()
            for message in batch {
                guard case .done(let changedJob) = await handle(message) else { break }  // shutting down mid-retry
                checkpoint.offsets["\(message.topic)/\(message.partition)"] = TopicPartitionOffset(
                    topic: message.topic, partition: message.partition, offset: message.offset + 1)
                if let changedJob { checkpoint.dirtyJobs.insert(changedJob) }
            }
            if let durability, ContinuousClock.now - lastCheckpoint >= durability.interval {
                let now = WallClock.nowMs()
                let forgotten = store.evict(
                    finishedBefore: now.subtracting(saturating: durability.finishedJobRetention.components.seconds.multipliedReportingOverflow(by: 1000).partialValue),
                    idleBefore: now.subtracting(saturating: durability.idleJobRetention.components.seconds.multipliedReportingOverflow(by: 1000).partialValue))
                checkpoint.forgottenJobs += forgotten
                checkpoint.dirtyJobs.subtract(forgotten.map(\.jobId))
                await write(&checkpoint, durability)
                lastCheckpoint = .now
            }
            metrics.kafkaUp.set(consumer.status.allBrokersDown ? 0.0 : 1.0)
            if ContinuousClock.now - lastLagUpdate > .seconds(2) {
                lastLagUpdate = .now
                for lag in consumer.partitionLags() {
                    if let value = lag.lag { metrics.setLag(topic: lag.topic, partition: lag.partition, lag: value) }
                }
                for broker in consumer.status.brokers {
                    if let rtt = broker.meanRoundTripSeconds { metrics.setBrokerRoundTrip(broker: broker.nodeId, seconds: rtt) }
                }
            }
        }
        readiness.ingestStopped()
        if let durability {
            await write(&checkpoint, durability)
        } else {
            do {
                try await consumer.commit()
            } catch {
                logger.warning("final offset commit failed; uncommitted events will be read again", metadata: ["error": "\(error)"])
            }
        }
        await consumer.close()
        logger.info("consumer closed")
    }

    /// Snapshots first, offsets second: a committed offset never runs ahead of the saved state.
    private func write(_ checkpoint: inout Checkpoint, _ durability: Durability) async {
        do {
            if !checkpoint.dirtyJobs.isEmpty || !checkpoint.forgottenJobs.isEmpty {
                try await durability.changelog.write(checkpoint.dirtyJobs, forgotten: checkpoint.forgottenJobs, from: store)
                checkpoint.dirtyJobs.removeAll()
                checkpoint.forgottenJobs.removeAll()
            }
            // Only offsets of partitions this member owns now: committing others fails with "unknown member", and
            // librdkafka answers that by restarting the group join — every second, a join that never completes.
            // While the group rebalances (nothing assigned) they wait; once it is done, those of partitions that went
            // to another member are dropped (it reads their events again: at-least-once).
            let owned = consumer.assignedPartitions()
            if !owned.isEmpty {
                checkpoint.offsets = checkpoint.offsets.filter { owned.contains(TopicPartition(topic: $0.value.topic, partition: $0.value.partition)) }
                try await consumer.commit(Array(checkpoint.offsets.values))
                checkpoint.offsets.removeAll()
            }
            checkpoint.failures = 0
            // "Committed" only when nothing handled waits any more (a member left without partitions has not).
            if checkpoint.offsets.isEmpty { metrics.lastCommit.set(Double(WallClock.nowMs()) / 1000) }
        } catch {
            metrics.checkpointFailures.increment()
            checkpoint.failures += 1
            // Keep everything: the next interval retries (later offsets supersede earlier ones).
            if checkpoint.failures <= 3 || checkpoint.failures % 60 == 0 {
                logger.error("checkpoint failed; offsets stay uncommitted", metadata: ["error": "\(error)", "failures": "\(checkpoint.failures)"])
            }
        }
    }

    /// Handles one message fully (applied, or dead-lettered and acknowledged).
    func handle(_ message: KafkaMessage) async -> Handled {
        var changedJob: String?
        switch decoder.decode(message.value) {
        case .failure(let rejection):
            metrics.eventsUnparsed.increment()
            guard await deadLetter(message, rejection) else { return .interrupted }
        case .success(let event):
            metrics.eventsConsumed[event.type]?.increment()
            // An event from the far future would win "latest event wins" for ever; the record's own timestamp is
            // the reference (the wall clock when it has none).
            // A producer sets the record timestamp too, so it never counts for later than the bridge's own clock.
            let now = WallClock.nowMs()
            let reference = min(message.timestampMs.flatMap { $0 > 0 ? $0 : nil } ?? now, now)
            if event.occurredAt > reference.adding(saturating: maxClockSkewMs) {
                let rejection = Rejection(
                    .implausibleTimestamp,
                    "occurred_at is \(event.occurredAt.subtracting(saturating: reference) / 1000) s ahead of the record's timestamp (or the bridge's clock); at most \(maxClockSkewMs / 1000) s (--max-clock-skew)")
                guard await deadLetter(message, rejection) else { return .interrupted }
                return finish(message, changedJob: nil)
            }
            switch store.apply(event) {
            case .applied:
                changedJob = event.jobId
            case .duplicate:
                metrics.duplicates.increment()
            case .rejected(let rejection):
                guard await deadLetter(message, rejection) else { return .interrupted }
            }
        }
        return finish(message, changedJob: changedJob)
    }

    private func finish(_ message: KafkaMessage, changedJob: String?) -> Handled {
        if durability == nil {
            do {
                try consumer.storeOffset(of: message)
            } catch {
                // The partition was revoked meanwhile; its new owner reads the event again.
                logger.debug("offset not stored", metadata: ["error": "\(error)"])
            }
        }
        return .done(changedJob: changedJob)
    }

    /// Writes the rejected event to the dead-letter topic, retrying until the broker acknowledges it.
    /// Returns false only if shutdown interrupted the retries. A value too large for a record is written
    /// truncated (and marked so). An error Kafka will keep giving (not authorised, too large, no such topic)
    /// marks the bridge not ready and is counted; ingest holds — nothing is skipped — until it is fixed.
    func deadLetter(_ message: KafkaMessage, _ rejection: Rejection) async -> Bool {
        metrics.eventsInvalid[rejection.reason]?.increment()
        logger.notice(
            "event rejected",
            metadata: [
                "reason": "\(rejection.reason.rawValue)", "detail": "\(rejection.detail.prefix(300))",
                "topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)",
            ])
        let record = DeadLetter.record(for: message, rejection: rejection, topic: deadLetterTopic, maxBytes: deadLetterMaxBytes)
        if record.truncated { metrics.deadLettersTruncated.increment() }
        var backoff = Duration.milliseconds(100)
        var blocked = false
        let firstAttempt = ContinuousClock.now
        while true {
            do {
                try await deadLetterProducer.sendAll([record.record], abandonIf: { Task.isShuttingDownGracefully })
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
            if Task.isShuttingDownGracefully || Task.isCancelled { return false }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }
}

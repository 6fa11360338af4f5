import Kafka
import Logging
import ProgressAggregation
import ProgressContract
import ServiceLifecycle

/// Kafka in → contract → aggregation: consumes events, applies valid ones to the store,
/// dead-letters the rest, and stores each offset only after its event is fully handled
/// (applied, or dead-lettered and acknowledged) — at-least-once.
public struct IngestService: Service {
    let consumer: KafkaConsumer
    let deadLetterProducer: KafkaProducer
    let deadLetterTopic: String
    let decoder: EventDecoder
    let store: JobStore
    let metrics: BridgeMetrics
    let readiness: Readiness
    let logger: Logger

    public init(
        consumer: KafkaConsumer, deadLetterProducer: KafkaProducer, deadLetterTopic: String, decoder: EventDecoder,
        store: JobStore, metrics: BridgeMetrics, readiness: Readiness, logger: Logger
    ) {
        self.consumer = consumer
        self.deadLetterProducer = deadLetterProducer
        self.deadLetterTopic = deadLetterTopic
        self.decoder = decoder
        self.store = store
        self.metrics = metrics
        self.readiness = readiness
        self.logger = logger
    }

    public func run() async throws {
        readiness.ingestStarted(status: consumer.status)
        logger.info("consuming", metadata: ["topics": "\(consumer.configuration.topics.joined(separator: ","))", "group": "\(consumer.configuration.groupId)"])
        var lastLagUpdate = ContinuousClock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let batch = await consumer.poll()
            for message in batch {
                guard await handle(message) else { break }  // shutting down mid-retry
            }
            metrics.kafkaUp.set(consumer.status.allBrokersDown ? 0.0 : 1.0)
            if ContinuousClock.now - lastLagUpdate > .seconds(2) {
                lastLagUpdate = .now
                for lag in consumer.partitionLags() {
                    if let value = lag.lag { metrics.setLag(topic: lag.topic, partition: lag.partition, lag: value) }
                }
            }
        }
        readiness.ingestStopped()
        do {
            try await consumer.commit()
        } catch {
            logger.warning("final offset commit failed; uncommitted events will be read again", metadata: ["error": "\(error)"])
        }
        await consumer.close()
        logger.info("consumer closed")
    }

    /// Handles one message fully; returns false if it stopped because of shutdown (offset not stored).
    func handle(_ message: KafkaMessage) async -> Bool {
        switch decoder.decode(message.value) {
        case .failure(let rejection):
            metrics.eventsUnparsed.increment()
            guard await deadLetter(message, rejection) else { return false }
        case .success(let event):
            metrics.eventsConsumed[event.type]?.increment()
            switch store.apply(event) {
            case .applied:
                break
            case .duplicate:
                metrics.duplicates.increment()
            case .rejected(let rejection):
                guard await deadLetter(message, rejection) else { return false }
            }
        }
        do {
            try consumer.storeOffset(of: message)
        } catch {
            // The partition was revoked meanwhile; its new owner reads the event again.
            logger.debug("offset not stored", metadata: ["error": "\(error)"])
        }
        return true
    }

    /// Writes the rejected event to the dead-letter topic, retrying until the broker
    /// acknowledges it. Returns false only if shutdown interrupted the retries.
    func deadLetter(_ message: KafkaMessage, _ rejection: Rejection) async -> Bool {
        metrics.eventsInvalid[rejection.reason]?.increment()
        logger.notice(
            "event rejected",
            metadata: [
                "reason": "\(rejection.reason.rawValue)", "detail": "\(rejection.detail.prefix(300))",
                "topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)",
            ])
        var backoff = Duration.milliseconds(100)
        while true {
            do {
                try await deadLetterProducer.send(
                    topic: deadLetterTopic, key: message.key, value: message.value,
                    headers: DeadLetter.headers(for: message, rejection: rejection))
                metrics.eventsDeadLettered.increment()
                return true
            } catch {
                metrics.deadLetterFailures.increment()
                logger.error("dead-letter write failed; retrying, offset not stored", metadata: ["error": "\(error)", "retry_in": "\(backoff)"])
            }
            if Task.isShuttingDownGracefully || Task.isCancelled { return false }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }
}

import Prometheus
import ProgressContract

/// The bridge's operational metrics, in one Prometheus registry. Labels are bounded:
/// event types, rejection reasons and partitions, never job ids.
public final class BridgeMetrics: Sendable {
    /// The registry `/metrics` renders.
    public let registry = PrometheusCollectorRegistry()

    /// Events read, by type, at each type's place in `EventType.allCases` (see `consumed(_:)`).
    private let eventsConsumed: [Counter]
    let eventsUnparsed: Counter
    let eventsInvalid: [RejectionReason: Counter]
    let eventsDeadLettered: Counter
    let deadLetterFailures: Counter
    let duplicates: Counter
    let eventsApplied: Counter
    let activeJobs: Gauge
    let trackedJobs: Gauge
    let connections: Gauge
    let connectionsTotal: Counter
    let messagesSent: Counter
    let socketWritesUnfinished: Counter
    let messagesConflated: Counter
    let messagesDropped: Counter
    let sendQueueOverflows: Counter
    let deliveryAge: DurationHistogram
    let kafkaUp: Gauge
    let checkpointFailures: Counter
    let policyCloses: Counter
    let connectionsRefused: Counter
    let refusals: [AuthFailure.Kind: Counter]
    let queuedBytes: Gauge
    let deadLetterPermanentFailures: Counter
    let deadLettersTruncated: Counter
    let httpConnections: Gauge
    let httpConnectionsRefused: Counter
    let tokenExpiredCloses: Counter
    let limiterSlots: Gauge
    let resumesRateLimited: Counter
    let lastCommit: Gauge
    let partitionsOwned: Gauge
    let inputPartitions: Gauge
    let stateRecordsWritten: Counter
    let handoverDeadLettersMissed: Counter
    let handoversUncommitted: Counter
    let commands: [String: Counter]

    /// Creates every metric up front so a scrape shows them all from the start.
    public init() {
        let registry = self.registry
        eventsConsumed = EventType.allCases.map { type in
            registry.makeCounter(descriptor: .bridge("events_consumed_total", "Events read from Kafka, by event type (valid envelope)."), labels: [("type", type.rawValue)])
        }
        eventsUnparsed = registry.makeCounter(descriptor: .bridge("events_consumed_total", "Events read from Kafka, by event type (valid envelope)."), labels: [("type", "unknown")])
        var invalid: [RejectionReason: Counter] = [:]
        for reason in RejectionReason.allCases {
            invalid[reason] = registry.makeCounter(descriptor: .bridge("events_invalid_total", "Events not applied to any job, by reason."), labels: [("reason", reason.rawValue)])
        }
        eventsInvalid = invalid
        eventsDeadLettered = registry.makeCounter(descriptor: .bridge("events_dead_lettered_total", "Events written to the dead-letter topic and acknowledged."))
        deadLetterFailures = registry.makeCounter(descriptor: .bridge("dead_letter_failures_total", "Dead-letter writes that failed and were retried."))
        duplicates = registry.makeCounter(descriptor: .bridge("events_duplicate_total", "Events whose event_id was already applied."))
        eventsApplied = registry.makeCounter(descriptor: .bridge("events_applied_total", "Events applied to a job aggregate."))
        activeJobs = registry.makeGauge(descriptor: .bridge("active_jobs", "Jobs not in a terminal state."))
        trackedJobs = registry.makeGauge(descriptor: .bridge("tracked_jobs", "Jobs held in memory."))
        connections = registry.makeGauge(descriptor: .bridge("websocket_connections", "Open WebSocket subscriber connections."))
        connectionsTotal = registry.makeCounter(descriptor: .bridge("websocket_connections_opened_total", "WebSocket subscriber connections accepted."))
        messagesSent = registry.makeCounter(descriptor: .bridge("messages_sent_total", "Messages written to WebSocket subscribers."))
        socketWritesUnfinished = registry.makeCounter(
            descriptor: .bridge(
                "socket_writes_unfinished_total",
                "Messages a subscriber's socket took only in part, or not at all, when written straight to it; the event loop writes the rest once the socket drains."))
        messagesConflated = registry.makeCounter(descriptor: .bridge("messages_conflated_total", "job.progress messages replaced by a newer one before being sent."))
        messagesDropped = registry.makeCounter(descriptor: .bridge("messages_dropped_total", "Messages not delivered because their subscriber's send queue overflowed."))
        sendQueueOverflows = registry.makeCounter(descriptor: .bridge("send_queue_overflows_total", "Subscribers disconnected because their send queue overflowed."))
        deliveryAge = registry.makeDurationHistogram(descriptor: .bridge("event_age_at_delivery_seconds", "Time from an event's occurred_at to its delivery to a subscriber."), buckets: [.milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
                      .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60)])
        checkpointFailures = registry.makeCounter(
            descriptor: .bridge("checkpoint_failures_total", "State snapshot or offset commit attempts that failed (retried)."))
        policyCloses = registry.makeCounter(
            descriptor: .bridge("websocket_policy_closes_total", "Subscribers closed for sending faster than allowed (1008)."))
        connectionsRefused = registry.makeCounter(
            descriptor: .bridge("websocket_connections_refused_total", "WebSocket connections refused by the connection limits (1013)."))
        var refusals: [AuthFailure.Kind: Counter] = [:]
        for kind in AuthFailure.Kind.allCases {
            refusals[kind] = registry.makeCounter(
                descriptor: .bridge("requests_refused_total", "Requests refused by authentication or authorization, by reason."),
                labels: [("reason", kind.rawValue)])
        }
        self.refusals = refusals
        queuedBytes = registry.makeGauge(descriptor: .bridge("send_queue_bytes", "Bytes queued for WebSocket subscribers, over all of them."))
        deadLetterPermanentFailures = registry.makeCounter(
            descriptor: .bridge("dead_letter_permanent_failures_total", "Dead-letter writes Kafka refused for good (not authorised, too large, …); ingest holds until fixed."))
        deadLettersTruncated = registry.makeCounter(
            descriptor: .bridge("dead_letters_truncated_total", "Dead letters written with a truncated value because the original was too large."))
        httpConnections = registry.makeGauge(descriptor: .bridge("http_connections", "Open HTTP connections on the public port (WebSockets included)."))
        httpConnectionsRefused = registry.makeCounter(
            descriptor: .bridge("http_connections_refused_total", "HTTP connections closed at once because --max-http-connections were open."))
        tokenExpiredCloses = registry.makeCounter(
            descriptor: .bridge("websocket_token_expired_closes_total", "Subscribers closed because their token expired (4401)."))
        limiterSlots = registry.makeGauge(
            descriptor: .bridge("websocket_limiter_slots", "WebSocket connection slots held in the connection limiter (per address and subject)."))
        resumesRateLimited = registry.makeCounter(
            descriptor: .bridge("resumes_rate_limited_total", "resume requests refused because the client resumed too often."))
        lastCommit = registry.makeGauge(
            descriptor: .bridge("last_commit_timestamp_seconds", "Unix time of the last successful checkpoint (state written, offsets committed)."))
        partitionsOwned = registry.makeGauge(
            descriptor: .bridge("partitions_owned", "Input partitions this replica owns in the consumer group (it dead-letters, checkpoints and commits for them)."))
        stateRecordsWritten = registry.makeCounter(
            descriptor: .bridge("state_records_written_total", "Records this replica wrote to the state topic (job headers, videos, tombstones) as the owner of their partitions."))
        inputPartitions = registry.makeGauge(
            descriptor: .bridge("input_partitions", "Partitions of the input topics (every replica reads all of them)."))
        handoverDeadLettersMissed = registry.makeCounter(
            descriptor: .bridge(
                "handover_dead_letters_missed_total",
                "Rejected events a new partition owner could not dead-letter (more rejections while the partition had no owner than remembered, or not readable back)."))
        handoversUncommitted = registry.makeCounter(
            descriptor: .bridge(
                "handovers_uncommitted_total",
                "Partitions this replica gave back without their last offsets committed (refused mid-rebalance): the next owner repeats the dead letters in between."))
        var commands: [String: Counter] = [:]
        for kind in JobCommandKind.allCases {
            for outcome in ["accepted", "repeated", "refused", "unavailable"] {
                commands[kind.rawValue + "|" + outcome] = registry.makeCounter(
                    descriptor: .bridge("commands_total", "Job command requests, by command type and outcome (accepted: published and acknowledged; repeated: an idempotent retry; refused: 4xx; unavailable: 503)."),
                    labels: [("type", kind.rawValue), ("outcome", outcome)])
            }
        }
        self.commands = commands
        kafkaUp = registry.makeGauge(descriptor: .bridge("kafka_up", "1 while the consumer reaches Kafka, 0 while all brokers are down."))
    }

    private let lagGauges = GaugeFamily("consumer_lag", "Messages behind the partition's high watermark.")
    private let brokerRoundTrips = GaugeFamily(
        "kafka_broker_rtt_seconds", "Mean request round-trip time per broker over librdkafka's last statistics window.")

    /// Counts a command request by type and outcome (`accepted`, `repeated`, `refused`, `unavailable`).
    func command(_ kind: JobCommandKind, _ outcome: JobCommandRelay.Outcome) {
        let label: String
        switch outcome {
        case .accepted(_, let repeated): label = repeated ? "repeated" : "accepted"
        case .refused(let status, _, _): label = status == 503 ? "unavailable" : "refused"
        }
        commands[kind.rawValue + "|" + label]?.increment()
    }

    /// The counter of events read of `type`: read for every event, so found by the type's place in `allCases` — not
    /// by a dictionary, where an event type's hash is its raw string's.
    func consumed(_ type: EventType) -> Counter {
        let place =
            switch type {
            case .jobStateChanged: 0
            case .jobProgress: 1
            case .videoCreated: 2
            case .videoUpdated: 3
            case .videoCompleted: 4
            case .videoFailed: 5
            case .jobCompleted: 6
            case .jobFailed: 7
            case .jobCanceled: 8
            }
        return eventsConsumed[place]
    }

    /// Counts a refusal.
    func refused(_ failure: AuthFailure) {
        refusals[failure.kind]?.increment()
    }

    /// Sets the consumer lag of one partition.
    func setLag(topic: String, partition: Int32, lag: Int64) {
        lagGauges.gauge(registry, [("topic", topic), ("partition", String(partition))]).record(Double(lag))
    }

    /// Sets a broker's mean request round-trip time (from librdkafka's statistics).
    func setBrokerRoundTrip(broker: Int32, seconds: Double) {
        brokerRoundTrips.gauge(registry, [("broker", String(broker))]).record(seconds)
    }

    /// Renders the exposition text.
    public func render() -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}

import Synchronization

/// Gauges of one name created on first use per label set — for labels with a bounded set of values
/// (partitions, brokers), never for anything a client chooses.
final class GaugeFamily: Sendable {
    private let name: String
    private let help: String
    private let gauges = Mutex<[[String]: Gauge]>([:])

    init(_ name: String, _ help: String) {
        self.name = name
        self.help = help
    }

    func gauge(_ registry: PrometheusCollectorRegistry, _ labels: [(String, String)]) -> Gauge {
        gauges.withLock { map in
            let key = labels.map(\.1)
            if let g = map[key] { return g }
            let g = registry.makeGauge(descriptor: .bridge(name, help), labels: labels)
            map[key] = g
            return g
        }
    }
}

extension MetricNameDescriptor {
    /// A `progress_bridge_…` metric name with its help text.
    static func bridge(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "progress_bridge", metricName: name, unitName: "", helpText: help)
    }
}

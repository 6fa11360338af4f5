import Foundation
import JSONSchema
import Logging
import ProgressContract
import SubscriberProtocol

/// WebSocket close codes the bridge uses beyond the standard ones.
public enum BridgeCloseCode {
    /// The subscriber read too slowly; its send queue overflowed. Reconnect with `last_seq`.
    public static let sendQueueOverflow: UInt16 = 4001
    /// The subscriber's token expired. Reconnect with a fresh token and `last_seq`.
    public static let tokenExpired: UInt16 = 4401
}

/// Settings of WebSocket delivery.
public struct DeliverySettings: Sendable {
    /// Messages queued per subscriber before it is cut off. Default 1024.
    public var sendQueueCapacity: Int
    /// Bytes queued per subscriber before it is cut off (4001). Default 1 MiB.
    public var sendQueueBytes: Int
    /// Largest client frame accepted, in bytes (bigger: close 1009). Default 64 KiB.
    public var maxClientMessageBytes: Int
    /// Client → server messages per second per connection (faster: close 1008). Default 20, bursts of 40.
    public var clientMessagesPerSecond: Double
    /// `resume` requests per second per connection (each may cost a snapshot), bursts of 3. Default 1.
    public var resumesPerSecond: Double
    /// Open WebSocket connections, in total, per client address and per token subject (more: close 1013).
    /// Defaults 10,000, 100 and 100.
    public var maxConnections: Int
    public var maxConnectionsPerAddress: Int
    public var maxConnectionsPerSubject: Int
    /// Peers whose `X-Forwarded-For`/`Forwarded` name the client's address. Default none.
    public var trustedProxies: TrustedProxies
    /// HTTP connections open at once on the public port, WebSockets included. Default 12,000.
    public var maxHTTPConnections: Int
    /// HTTP connections open at once from one peer address (IPv6: one /64; trusted proxies exempt). Default 256.
    public var maxHTTPConnectionsPerAddress: Int
    /// An HTTP connection with no request activity for this long is closed. Default 60 s.
    public var httpIdleTimeout: Duration

    public init(
        sendQueueCapacity: Int = 1024, sendQueueBytes: Int = 1 << 20, maxClientMessageBytes: Int = 64 * 1024, clientMessagesPerSecond: Double = 20,
        resumesPerSecond: Double = 1, maxConnections: Int = 10_000, maxConnectionsPerAddress: Int = 100, maxConnectionsPerSubject: Int = 100,
        trustedProxies: TrustedProxies = .none, maxHTTPConnections: Int = 12_000, maxHTTPConnectionsPerAddress: Int = 256,
        httpIdleTimeout: Duration = .seconds(60)
    ) {
        self.maxHTTPConnectionsPerAddress = maxHTTPConnectionsPerAddress
        self.sendQueueCapacity = sendQueueCapacity
        self.sendQueueBytes = sendQueueBytes
        self.maxClientMessageBytes = maxClientMessageBytes
        self.clientMessagesPerSecond = clientMessagesPerSecond
        self.resumesPerSecond = resumesPerSecond
        self.maxConnections = maxConnections
        self.maxConnectionsPerAddress = maxConnectionsPerAddress
        self.maxConnectionsPerSubject = maxConnectionsPerSubject
        self.trustedProxies = trustedProxies
        self.maxHTTPConnections = maxHTTPConnections
        self.httpIdleTimeout = httpIdleTimeout
    }
}

/// What one subscription says and hears, apart from the WebSocket framing (``SubscriberConnection``): the
/// acknowledgement, the snapshot or replay and the live events (through the store), and the answers to what the
/// client sends — `ping`, `resume`, `command`.
struct SubscriberSession: Sendable {
    let request: SubscriptionRequest
    /// What the token lets the subscriber see (a feed of all jobs carries only these) and control.
    let grant: Grant
    /// Relays the job commands a connected dashboard sends; nil: none are relayed.
    var commands: JobCommandRelay? = nil
    let store: JobStore
    let metrics: BridgeMetrics
    let settings: DeliverySettings
    let logger: Logger
    /// The subscriber's send queue.
    let outbox: Outbox

    private var subscriberId: ObjectIdentifier { ObjectIdentifier(outbox) }

    /// Counts the connection, queues the acknowledgement and subscribes: a snapshot (or a replay after
    /// `last_seq`) follows, then live events.
    func start() {
        metrics.connections.increment()
        metrics.connectionsTotal.increment()
        let now = WallClock.nowMs()
        var ack: JSONObject = [
            "connection_id": .string(request.connectionId), "server_time": .string(RFC3339.format(milliseconds: now)),
            "job_id": request.jobId.map(JSONValue.string) ?? .null,
        ]
        if case .jobs(let selection) = request.target {
            switch selection {
            case .all: ack["jobs"] = .string("*")
            case .listed(let ids): ack["jobs"] = .array(ids.map(JSONValue.string))
            }
        }
        outbox.enqueue(
            .make(
                type: "connection.ack", jobId: request.jobId, seq: 0, ts: now, occurredAt: nil, data: .object(ack),
                extra: ["connection_id": .string(request.connectionId)]))
        switch request.target {
        case .job(let jobId):
            store.subscribe(jobId: jobId, subscriber: subscriberId, outbox: outbox, lastSeq: request.lastSeq, now: now)
        case .jobs(let selection):
            let grant = self.grant
            store.watch(subscriber: subscriberId, outbox: outbox, now: now) { grant.allows($0) && selection.includes($0) }
        }
        logger.debug("subscriber connected", metadata: ["job_id": "\(request.jobId ?? "(feed)")", "connection_id": "\(request.connectionId)"])
    }

    /// Unsubscribes and uncounts the connection; once, when the connection is gone.
    func end() {
        switch request.target {
        case .job(let jobId): store.unsubscribe(jobId: jobId, subscriber: subscriberId)
        case .jobs: store.unwatch(subscriber: subscriberId)
        }
        outbox.close(.finished)
        metrics.connections.decrement()
        logger.debug("subscriber disconnected", metadata: ["connection_id": "\(request.connectionId)"])
    }

    /// A command the client asked for, to be relayed to Kafka (which takes a while): see ``relay(_:)``.
    struct PendingCommand: Sendable {
        let kind: JobCommandKind
        let jobId: String
        let body: [UInt8]
        let idempotencyKey: String?
        let id: JSONValue?
    }

    /// Answers one client text message; a job command to relay comes back instead (answered by ``relay(_:)``).
    func received(text: String, resumes: inout MessageRateLimit) -> PendingCommand? {
        let parsed = ClientMessage.parse(text, maxBytes: settings.maxClientMessageBytes)
        guard case .success(.command(let action, let data, let key, let id)) = parsed else {
            handleClientMessage(parsed, resumes: &resumes)
            return nil
        }
        let now = WallClock.nowMs()
        guard let jobId = request.jobId else {
            outbox.enqueue(.error(code: "invalid_message", message: "commands go over one-job subscriptions (job_id=…), or REST", now: now))
            return nil
        }
        guard commands != nil, let kind = JobCommandKind.allCases.first(where: { $0.action == action }) else {
            outbox.enqueue(.error(code: "commands_unavailable", message: "this bridge relays no commands", jobId: jobId, now: now))
            return nil
        }
        return PendingCommand(kind: kind, jobId: jobId, body: Array(data.serialized().utf8), idempotencyKey: key, id: id)
    }

    /// A job command from the connected dashboard, relayed as over REST (the same checks, the same answer codes):
    /// `command.accepted` once Kafka has it, or an `error` with the refusal's code; both echo the message's `id`.
    func relay(_ command: PendingCommand) async {
        guard let commands else { return }
        let outcome = await commands.submit(
            command.kind, jobId: command.jobId, body: command.body, grant: grant, idempotencyKey: command.idempotencyKey,
            traceparent: TraceParent.start())
        answer(command, outcome)
    }

    /// Answers `command` with `outcome`.
    func answer(_ command: PendingCommand, _ outcome: JobCommandRelay.Outcome) {
        switch outcome {
        case .accepted(let accepted, let repeated):
            var answer: JSONObject = ["command_id": .string(accepted.id), "type": .string(accepted.kind.rawValue), "repeated": .bool(repeated)]
            if let id = command.id { answer["id"] = id }
            outbox.enqueue(.make(type: "command.accepted", jobId: command.jobId, seq: 0, ts: WallClock.nowMs(), occurredAt: nil, data: .object(answer)))
        case .refused(_, let code, let message):
            var answer: JSONObject = ["code": .string(code), "message": .string(message)]
            if let id = command.id { answer["id"] = id }
            outbox.enqueue(.make(type: "error", jobId: command.jobId, seq: 0, ts: WallClock.nowMs(), occurredAt: nil, data: .object(answer)))
        }
    }

    /// Client → server: `ping`, `resume` (parsed by `ClientMessage`, the wire protocol's home; `command` is relayed
    /// by the caller).
    func handleClientMessage(_ parsed: Result<ClientMessage, ClientMessage.Refusal>, resumes: inout MessageRateLimit) {
        let now = WallClock.nowMs()
        switch parsed {
        case .failure(let refusal):
            outbox.enqueue(.error(code: refusal.code, message: refusal.message, now: now))
        case .success(.ping(let id)):
            outbox.enqueue(.make(type: "pong", jobId: request.jobId, seq: 0, ts: now, occurredAt: nil, data: .object(id.map { ["id": $0] } ?? [:])))
        case .success(.command):
            break  // relayed by the caller (it waits for Kafka's acknowledgement)
        case .success(.resume(let lastSeq)):
            guard resumes.allow() else {
                metrics.resumesRateLimited.increment()
                outbox.enqueue(
                    .error(code: "resume_rate_limited", message: "resume at most \(settings.resumesPerSecond) times a second", jobId: request.jobId, now: now))
                return
            }
            guard let jobId = request.jobId else {
                outbox.enqueue(
                    .error(code: "invalid_message", message: "resume is for one-job subscriptions; a feed reconnects and gets a fresh jobs.snapshot", now: now))
                return
            }
            store.resume(jobId: jobId, subscriber: subscriberId, outbox: outbox, lastSeq: lastSeq, now: now)
        }
    }
}

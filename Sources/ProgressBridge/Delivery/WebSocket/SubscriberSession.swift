import Foundation
import HummingbirdWebSocket
import JSONSchema
import Logging
import NIOCore
import NIOWebSocket
import ProgressContract
import ServiceLifecycle
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

/// One subscriber connection: acknowledge, snapshot (or replay), then live events, while
/// answering `ping` and `resume`. The session ends when either side ends, whatever ends it: the
/// reader finishing or failing (invalid UTF-8, protocol errors, resets) closes the outbox, so the
/// writer never waits for messages nobody will send, and a writer stuck on a dead socket is cancelled.
struct SubscriberSession {
    let request: SubscriptionRequest
    /// What the token lets the subscriber see (a feed of all jobs carries only these) and control.
    let grant: Grant
    /// Relays the job commands a connected dashboard sends; nil: none are relayed.
    var commands: JobCommandRelay? = nil
    let store: JobStore
    let metrics: BridgeMetrics
    let settings: DeliverySettings
    let logger: Logger
    /// When the token stops being valid (`exp` + leeway); the session is closed with 4401 then.
    var expiresAt: Date? = nil
    /// The connection: its event loop sends the subscriber's messages (`SubscriberChannelDrain`).
    let channel: any Channel
    /// Closes the connection at once, when the writer cannot get its close frame out (the client stopped reading).
    var forceClose: @Sendable () -> Void = {}
    /// How long a session may take to end once its outbox closed, before the connection is forced shut.
    static let closeGrace = Duration.seconds(2)

    /// Which task of the session ended (the reader with what ended it).
    private enum Ended {
        case closer, expiry
        case reader((any Error)?)
    }

    /// Runs the session. Rethrows, after everything is cleaned up, what ended the client's side (invalid UTF-8,
    /// a message over the size limit, a protocol error), so that the WebSocket layer closes with its code
    /// (1007, 1009, 1002).
    func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        let outbox = Outbox(capacity: settings.sendQueueCapacity, byteCapacity: settings.sendQueueBytes, metrics: metrics)
        let subscriberId = ObjectIdentifier(outbox)
        metrics.connections.increment()
        metrics.connectionsTotal.increment()
        defer {
            switch request.target {
            case .job(let jobId): store.unsubscribe(jobId: jobId, subscriber: subscriberId)
            case .jobs: store.unwatch(subscriber: subscriberId)
            }
            outbox.close(.finished)
            metrics.connections.decrement()
            logger.debug("subscriber disconnected", metadata: ["connection_id": "\(request.connectionId)"])
        }
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

        let clientError = await withGracefulShutdownHandler {
            await withTaskGroup(of: Ended.self, returning: (any Error)?.self) { group in
                // Messages leave from the connection's event loop; this task only sees the session out: once the
                // outbox closes — for whatever reason — it sends the close frame that reason calls for, within
                // `closeGrace` (a client that stopped reading would otherwise hold the session, its slot and its
                // subscription for ever), and ends the session.
                group.addTask {
                    do {
                        try await SubscriberChannelDrain.attach(outbox, to: channel, metrics: metrics)
                    } catch {
                        logger.debug("subscriber channel closed before delivery started", metadata: ["connection_id": "\(request.connectionId)"])
                        outbox.close(.clientGone)
                    }
                    await outbox.closed()
                    if await !sendCloseFrame(for: outbox.closure, outbound: outbound, within: Self.closeGrace) {
                        logger.info("session did not end in time after its outbox closed; closing the connection",
                                    metadata: ["connection_id": "\(request.connectionId)", "why": "\(String(describing: outbox.closure))"])
                        forceClose()
                    }
                    return .closer
                }
                group.addTask {
                    do {
                        try await readLoop(inbound: inbound, outbox: outbox)
                        return .reader(nil)
                    } catch {
                        logger.debug("subscriber read failed", metadata: ["connection_id": "\(request.connectionId)", "error": "\(error)"])
                        return .reader(error)
                    }
                }
                if let expiresAt {
                    group.addTask {
                        let seconds = max(0, expiresAt.timeIntervalSinceNow)
                        guard (try? await Task.sleep(for: .milliseconds(Int64(min(seconds, 1e9) * 1000)))) != nil else { return .expiry }
                        outbox.close(.tokenExpired)
                        return .expiry
                    }
                }
                var clientError: (any Error)?
                while let ended = await group.next() {
                    logger.trace("session task ended", metadata: ["connection_id": "\(request.connectionId)", "task": "\(ended)"])
                    switch ended {
                    case .closer:
                        group.cancelAll()  // the reader, the expiry timer
                        return clientError
                    case .reader(let error):
                        clientError = error
                        // The client is gone or broke the protocol. A close frame decided by the reader (rate limit)
                        // still goes out; otherwise there is nobody to write to.
                        outbox.close(.clientGone)
                    case .expiry:
                        continue
                    }
                }
                return clientError
            }
        } onGracefulShutdown: {
            outbox.close(.shuttingDown)
        }
        if let clientError, !(clientError is CancellationError) { throw clientError }
    }

    /// Sends the close frame `closure` calls for; false if that took longer than `grace` (the client stopped
    /// reading: the caller closes the connection).
    private func sendCloseFrame(for closure: OutboxClosure?, outbound: WebSocketOutboundWriter, within grace: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    try await closeFrame(for: closure, outbound: outbound)
                } catch {
                    logger.debug("subscriber close frame failed", metadata: ["connection_id": "\(request.connectionId)", "error": "\(error)"])
                }
                return true
            }
            group.addTask {
                try? await Task.sleep(for: grace)
                return Task.isCancelled
            }
            let inTime = await group.next() ?? true
            group.cancelAll()
            return inTime
        }
    }

    private func closeFrame(for closure: OutboxClosure?, outbound: WebSocketOutboundWriter) async throws {
        switch closure {
        case .overflowed:
            logger.info("subscriber too slow; closing", metadata: ["connection_id": "\(request.connectionId)"])
            try await outbound.close(.unknown(BridgeCloseCode.sendQueueOverflow), reason: "send queue overflow; reconnect with last_seq")
        case .shuttingDown:
            try await outbound.close(.goingAway, reason: "server shutting down")
        case .policyViolation:
            try await outbound.close(.policyViolation, reason: "client message rate exceeded")
        case .tokenExpired:
            metrics.tokenExpiredCloses.increment()
            try await outbound.close(.unknown(BridgeCloseCode.tokenExpired), reason: "token expired; reconnect with a fresh token and last_seq")
        case .finished, .clientGone, nil:
            break
        }
    }

    private func readLoop(inbound: WebSocketInboundStream, outbox: Outbox) async throws {
        var limit = MessageRateLimit(rate: settings.clientMessagesPerSecond, burst: settings.clientMessagesPerSecond * 2)
        var resumes = MessageRateLimit(rate: settings.resumesPerSecond, burst: 3)
        for try await message in inbound.messages(maxSize: settings.maxClientMessageBytes) {
            guard limit.allow() else {
                metrics.policyCloses.increment()
                logger.info("client sends too fast; closing", metadata: ["connection_id": "\(request.connectionId)"])
                outbox.close(.policyViolation)
                return
            }
            guard case .text(let text) = message else {
                outbox.enqueue(.error(code: "unsupported_frame", message: "send JSON text frames", now: WallClock.nowMs()))
                continue
            }
            let parsed = ClientMessage.parse(text, maxBytes: settings.maxClientMessageBytes)
            if case .success(.command(let action, let data, let key, let id)) = parsed {
                await relayCommand(action, data: data, idempotencyKey: key, id: id, outbox: outbox)
            } else {
                handleClientMessage(parsed, outbox: outbox, resumes: &resumes)
            }
        }
    }

    /// A job command from the connected dashboard, relayed as over REST (the same checks, the same answer codes):
    /// `command.accepted` once Kafka has it, or an `error` with the refusal's code; both echo the message's `id`.
    private func relayCommand(_ action: String, data: JSONValue, idempotencyKey: String?, id: JSONValue?, outbox: Outbox) async {
        let now = WallClock.nowMs()
        guard let jobId = request.jobId else {
            outbox.enqueue(.error(code: "invalid_message", message: "commands go over one-job subscriptions (job_id=…), or REST", now: now))
            return
        }
        guard let commands, let kind = JobCommandKind.allCases.first(where: { $0.action == action }) else {
            outbox.enqueue(.error(code: "commands_unavailable", message: "this bridge relays no commands", jobId: jobId, now: now))
            return
        }
        let body = Array(data.serialized().utf8)
        switch await commands.submit(kind, jobId: jobId, body: body, grant: grant, idempotencyKey: idempotencyKey, traceparent: TraceParent.start()) {
        case .accepted(let command, let repeated):
            var answer: JSONObject = ["command_id": .string(command.id), "type": .string(command.kind.rawValue), "repeated": .bool(repeated)]
            if let id { answer["id"] = id }
            outbox.enqueue(.make(type: "command.accepted", jobId: jobId, seq: 0, ts: WallClock.nowMs(), occurredAt: nil, data: .object(answer)))
        case .refused(_, let code, let message):
            var answer: JSONObject = ["code": .string(code), "message": .string(message)]
            if let id { answer["id"] = id }
            outbox.enqueue(.make(type: "error", jobId: jobId, seq: 0, ts: WallClock.nowMs(), occurredAt: nil, data: .object(answer)))
        }
    }

    /// Client → server: `ping`, `resume` (parsed by `ClientMessage`, the wire protocol's home; `command` is relayed
    /// by the read loop).
    func handleClientMessage(_ parsed: Result<ClientMessage, ClientMessage.Refusal>, outbox: Outbox, resumes: inout MessageRateLimit) {
        let now = WallClock.nowMs()
        switch parsed {
        case .failure(let refusal):
            outbox.enqueue(.error(code: refusal.code, message: refusal.message, now: now))
        case .success(.ping(let id)):
            outbox.enqueue(.make(type: "pong", jobId: request.jobId, seq: 0, ts: now, occurredAt: nil, data: .object(id.map { ["id": $0] } ?? [:])))
        case .success(.command):
            break  // relayed by the read loop (it waits for Kafka's acknowledgement)
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
            store.resume(jobId: jobId, subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: lastSeq, now: now)
        }
    }
}

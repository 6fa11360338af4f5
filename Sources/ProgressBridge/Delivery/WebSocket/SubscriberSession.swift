import Foundation
import HummingbirdWebSocket
import JSONSchema
import Logging
import ServiceLifecycle

/// WebSocket close codes the bridge uses beyond the standard ones.
public enum BridgeCloseCode {
    /// The subscriber read too slowly; its send queue overflowed. Reconnect with `last_seq`.
    public static let sendQueueOverflow: UInt16 = 4001
}

/// Settings of WebSocket delivery.
public struct DeliverySettings: Sendable {
    /// Messages queued per subscriber before it is cut off. Default 1024.
    public var sendQueueCapacity: Int
    /// Largest client frame accepted, in bytes (bigger: close 1009). Default 64 KiB.
    public var maxClientMessageBytes: Int
    /// Client → server messages per second per connection (faster: close 1008). Default 20, bursts of 40.
    public var clientMessagesPerSecond: Double
    /// Open WebSocket connections, in total and per client address (more: close 1013). Defaults 10,000 and 100.
    public var maxConnections: Int
    public var maxConnectionsPerAddress: Int

    public init(
        sendQueueCapacity: Int = 1024, maxClientMessageBytes: Int = 64 * 1024, clientMessagesPerSecond: Double = 20,
        maxConnections: Int = 10_000, maxConnectionsPerAddress: Int = 100
    ) {
        self.sendQueueCapacity = sendQueueCapacity
        self.maxClientMessageBytes = maxClientMessageBytes
        self.clientMessagesPerSecond = clientMessagesPerSecond
        self.maxConnections = maxConnections
        self.maxConnectionsPerAddress = maxConnectionsPerAddress
    }
}

/// What a subscriber asked for in its connection URL.
public struct SubscriptionRequest: Sendable, Equatable {
    public let jobId: String
    public let connectionId: String
    /// `token` — checked by authentication (a later stage); never logged.
    public let token: String?
    /// Resume after this bridge `seq` instead of starting with a snapshot.
    public let lastSeq: Int64?

    /// Parses and checks the query parameters; the error message names the parameter.
    public static func parse(jobId: String?, connectionId: String?, token: String?, lastSeq: String?) -> Result<SubscriptionRequest, SubscriptionError> {
        guard let jobId, !jobId.isEmpty else { return .failure(SubscriptionError("query parameter job_id is required")) }
        guard JobIdentifier.isValid(jobId) else {
            return .failure(SubscriptionError("query parameter job_id must match ^job_[A-Za-z0-9_-]{1,120}$"))
        }
        var resumeAfter: Int64?
        if let lastSeq {
            guard let value = Int64(lastSeq), value >= 0 else {
                return .failure(SubscriptionError("query parameter last_seq must be a non-negative integer"))
            }
            resumeAfter = value
        }
        let connection: String
        if let connectionId, !connectionId.isEmpty {
            guard connectionId.utf8.count <= 128 else { return .failure(SubscriptionError("query parameter connection_id is longer than 128 bytes")) }
            connection = connectionId
        } else {
            connection = "conn_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        }
        return .success(SubscriptionRequest(jobId: jobId, connectionId: connection, token: token, lastSeq: resumeAfter))
    }
}

/// A subscription request that cannot be served.
public struct SubscriptionError: Error, Sendable, Equatable {
    public let message: String
    init(_ message: String) { self.message = message }
}

/// Job ids as the contract defines them.
enum JobIdentifier {
    static func isValid(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        guard bytes.count >= 5, bytes.count <= 124, bytes.starts(with: Array("job_".utf8)) else { return false }
        return bytes.dropFirst(4).allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D
        }
    }
}

/// One subscriber connection: acknowledge, snapshot (or replay), then live events, while
/// answering `ping` and `resume`.
struct SubscriberSession {
    let request: SubscriptionRequest
    let store: JobStore
    let metrics: BridgeMetrics
    let settings: DeliverySettings
    let logger: Logger

    func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        let outbox = Outbox(capacity: settings.sendQueueCapacity, metrics: metrics)
        let subscriberId = ObjectIdentifier(outbox)
        metrics.connections.increment()
        metrics.connectionsTotal.increment()
        defer {
            store.unsubscribe(jobId: request.jobId, subscriber: subscriberId)
            outbox.close(.finished)
            metrics.connections.decrement()
        }
        let now = WallClock.nowMs()
        outbox.enqueue(
            .make(
                type: "connection.ack", jobId: request.jobId, seq: 0, ts: now, occurredAt: nil,
                data: .object([
                    "connection_id": .string(request.connectionId), "server_time": .string(RFC3339.format(milliseconds: now)),
                    "job_id": .string(request.jobId),
                ]),
                extra: ["connection_id": .string(request.connectionId)]))
        store.subscribe(jobId: request.jobId, subscriber: subscriberId, outbox: outbox, lastSeq: request.lastSeq, now: now)
        logger.debug("subscriber connected", metadata: ["job_id": "\(request.jobId)", "connection_id": "\(request.connectionId)"])

        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writeLoop(outbox: outbox, outbound: outbound) }
                group.addTask { try await readLoop(inbound: inbound, outbox: outbox) }
                // The writer ends the session (it sends the close frame); the reader ends it when the client leaves.
                _ = try await group.next()
                if outbox.closure == .policyViolation {
                    _ = try await group.next()  // let the writer send the close frame
                }
                outbox.close(.finished)
                group.cancelAll()
            }
        } onGracefulShutdown: {
            outbox.close(.shuttingDown)
        }
    }

    private func writeLoop(outbox: Outbox, outbound: WebSocketOutboundWriter) async throws {
        while let message = await outbox.next() {
            try await outbound.write(.text(message.text))
            metrics.messagesSent.increment()
            if let occurredAt = message.occurredAt {
                metrics.deliveryAge.record(.milliseconds(max(0, WallClock.nowMs() - occurredAt)))
            }
        }
        switch outbox.closure {
        case .overflowed:
            logger.info("subscriber too slow; closing", metadata: ["connection_id": "\(request.connectionId)"])
            try await outbound.close(.unknown(BridgeCloseCode.sendQueueOverflow), reason: "send queue overflow; reconnect with last_seq")
        case .shuttingDown:
            try await outbound.close(.goingAway, reason: "server shutting down")
        case .policyViolation:
            try await outbound.close(.policyViolation, reason: "client message rate exceeded")
        case .finished, nil:
            break
        }
    }

    private func readLoop(inbound: WebSocketInboundStream, outbox: Outbox) async throws {
        var limit = MessageRateLimit(rate: settings.clientMessagesPerSecond, burst: settings.clientMessagesPerSecond * 2)
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
            handleClientMessage(text, outbox: outbox)
        }
    }

    /// Client → server: `ping`, `resume`.
    func handleClientMessage(_ text: String, outbox: Outbox) {
        let now = WallClock.nowMs()
        guard let value = try? JSONParser(limits: .init(maxDepth: 8, maxBytes: settings.maxClientMessageBytes)).parse(text),
            let type = value["type"]?.stringValue
        else {
            outbox.enqueue(.error(code: "invalid_message", message: "expected a JSON object with a string \"type\"", now: now))
            return
        }
        switch type {
        case "ping":
            var data: JSONObject = [:]
            if let id = value["id"] { data["id"] = id }
            outbox.enqueue(.make(type: "pong", jobId: request.jobId, seq: 0, ts: now, occurredAt: nil, data: .object(data)))
        case "resume":
            guard let lastSeq = value["last_seq"]?.int64Value, lastSeq >= 0 else {
                outbox.enqueue(.error(code: "invalid_message", message: "resume needs a non-negative integer last_seq", now: now))
                return
            }
            store.resume(jobId: request.jobId, outbox: outbox, lastSeq: lastSeq, now: now)
        default:
            outbox.enqueue(.error(code: "unknown_message_type", message: "unknown message type \"\(type.prefix(64))\"; use ping or resume", now: now))
        }
    }
}

import Foundation
import Logging
import ServiceLifecycle
import NIOCore
import NIOWebSocket
import SubscriberProtocol

/// What the upgrade decided for one subscriber connection, carried into its pipeline.
struct SubscriberTicket: Sendable {
    let request: SubscriptionRequest
    let grant: Grant
    /// The client's address as the connection limits count it (behind trusted proxies: the forwarded one).
    let address: String
}

/// What every subscriber connection shares: the store, the limits, the settings.
struct SubscriberEnvironment: Sendable {
    let store: JobStore
    let metrics: BridgeMetrics
    let settings: DeliverySettings
    let limiter: ConnectionLimiter
    /// Relays job commands; nil: none are relayed.
    var commands: JobCommandRelay? = nil
    /// Runs what a connection has to wait for (a command's acknowledgement by Kafka).
    var work: SubscriberWork? = nil
    let logger: Logger
    /// How long the bridge waits for the client's answer to its close frame before it closes the connection.
    var closeTimeout: TimeAmount = .seconds(3)
    /// How often the bridge pings an idle client; a ping unanswered by the next one closes the connection (1001).
    /// nil: never.
    var pingInterval: TimeAmount? = .seconds(30)
}

/// One subscriber's WebSocket, after the upgrade, as a handler on its channel: framing and the close handshake
/// (RFC 6455), the automatic ping, the token's expiry, the client's message rate, and the ``SubscriberSession``.
///
/// Everything happens on the channel's event loop, in handler callbacks and scheduled timers: an idle subscriber
/// holds no task and no suspended async frame, only this handler, its outbox and its channel (10,000 subscribers
/// per process are 10,000 of those). Messages leave through the `FrameWriter` (`SubscriberChannelDrain`); frames of
/// its own (pongs, pings, close) go through NIO's frame encoder.
final class SubscriberConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private enum State {
        case open
        /// Our close frame went out; waiting for the client's (or `closeTimeout`).
        case closing
        /// The connection is closing or closed; nothing more is read or sent.
        case closed
    }

    private let ticket: SubscriberTicket
    private let environment: SubscriberEnvironment
    private var state = State.open
    private var context: ChannelHandlerContext?
    private var session: SubscriberSession?
    private var admitted = false
    private var ended = false
    /// A fragmented message being collected: its opcode and the bytes so far.
    private var partial: (opcode: WebSocketOpcode, data: ByteBuffer)?
    private var messageRate: MessageRateLimit
    private var resumeRate: MessageRateLimit
    /// The payload of our last ping, until the client answers it.
    private var unansweredPing: ByteBuffer?
    private var pingTimer: Scheduled<Void>?
    private var expiryTimer: Scheduled<Void>?
    private var closeTimer: Scheduled<Void>?

    init(ticket: SubscriberTicket, environment: SubscriberEnvironment) {
        self.ticket = ticket
        self.environment = environment
        let settings = environment.settings
        self.messageRate = MessageRateLimit(rate: settings.clientMessagesPerSecond, burst: settings.clientMessagesPerSecond * 2)
        self.resumeRate = MessageRateLimit(rate: settings.resumesPerSecond, burst: 3)
    }

    private var connectionId: Logger.MetadataValue { "\(ticket.request.connectionId)" }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let environment = self.environment
        if let refusal = environment.limiter.admit(ticket.address, subject: ticket.grant.subject) {
            environment.metrics.connectionsRefused.increment()
            sendClose(code: .unknown(1013), reason: refusal.reason)
            return
        }
        admitted = true
        let settings = environment.settings
        let outbox = Outbox(
            capacity: settings.sendQueueCapacity, byteCapacity: settings.sendQueueBytes, metrics: environment.metrics,
            deliveredOn: context.eventLoop)
        let session = SubscriberSession(
            request: ticket.request, grant: ticket.grant, commands: environment.commands, store: environment.store, metrics: environment.metrics,
            settings: settings, logger: environment.logger, outbox: outbox)
        do {
            try SubscriberChannelDrain.attach(outbox, to: context.channel, metrics: environment.metrics)
        } catch {
            environment.logger.debug("subscriber channel closed before delivery started", metadata: ["connection_id": connectionId])
            state = .closed
            context.close(promise: nil)
            return
        }
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        outbox.whenClosed { reason in loop.execute { bound.value.outboxClosed(reason) } }
        // Held only once started: `end()` ends what `start()` began (its gauge among it), nothing else.
        self.session = session
        session.start()
        if let expiresAt = ticket.grant.expiresAt {
            let milliseconds = Int64(min(max(0, expiresAt.timeIntervalSinceNow), 1e9) * 1000)
            expiryTimer = loop.scheduleTask(in: .milliseconds(milliseconds)) { outbox.close(.tokenExpired) }
        }
        schedulePing()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        end()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        end()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The client shut its side (TCP half-close) without a close frame: nothing more can come, the connection is over.
        if let event = event as? ChannelEvent, event == .inputClosed {
            session?.outbox.close(.clientGone)
            state = .closed
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        environment.logger.debug("subscriber connection failed", metadata: ["connection_id": connectionId, "error": "\(error)"])
        session?.outbox.close(.clientGone)
        state = .closed
        if error is NIOWebSocketError {
            // A malformed frame: NIO's protocol error handler (before this one) wrote the close frame it calls for
            // and closes once that is written; closing now would throw the frame away. The deadline covers a client
            // that does not read it.
            armCloseDeadline()
        } else {
            context.close(promise: nil)
        }
    }

    /// Once, whatever ends the connection: the subscription ends and its slot and gauges are given back.
    private func end() {
        guard !ended else { return }
        ended = true
        pingTimer?.cancel()
        expiryTimer?.cancel()
        closeTimer?.cancel()
        session?.end()
        if admitted { environment.limiter.release(ticket.address, subject: ticket.grant.subject) }
    }

    // MARK: Frames from the client

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard state != .closed else { return }
        // A client must mask its frames, and no extension gives the reserved bits a meaning here.
        guard frame.maskKey != nil, !frame.rsv1, !frame.rsv2, !frame.rsv3 else { return fail(.protocolError) }
        switch frame.opcode {
        case .connectionClose:
            receivedClose(frame.unmaskedData)
        case _ where state == .closing:
            return  // after our close frame, only the client's close matters
        case .ping:
            guard allowed() else { return }
            // (The decoder refuses fragmented or long control frames.) A client that does not read gets no pongs.
            if context.channel.isWritable {
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
            }
        case .pong:
            guard allowed() else { return }
            if let unansweredPing, frame.unmaskedData == unansweredPing { self.unansweredPing = nil }
        case .text, .binary:
            guard partial == nil else { return fail(.protocolError) }  // a new message inside a fragmented one
            // Every data frame counts, a fragment too: endless empty fragments are a flood like any other.
            guard allowed() else { return }
            if frame.fin {
                receivedMessage(frame.opcode, frame.unmaskedData)
            } else {
                partial = (frame.opcode, frame.unmaskedData)
            }
        case .continuation:
            guard let collected = partial?.data.readableBytes else { return fail(.protocolError) }  // no message to continue
            guard allowed() else { return }
            guard collected + frame.length <= environment.settings.maxClientMessageBytes else { return fail(.messageTooLarge) }
            var more = frame.unmaskedData
            partial!.data.writeBuffer(&more)  // in place: the only reference, never a copy of what came before
            if frame.fin, let (opcode, data) = partial.take() {
                receivedMessage(opcode, data)
            }
        default:
            fail(.protocolError)  // a reserved opcode
        }
    }

    /// Takes one frame (data, ping or pong) of the client's allowance; over it, the client is closed with 1008 —
    /// at once, so the rest of a flood already read is dropped, not counted and logged frame by frame.
    private func allowed() -> Bool {
        guard messageRate.allow() else {
            guard state == .open, let session else { return false }
            environment.metrics.policyCloses.increment()
            environment.logger.info("client sends too fast; closing", metadata: ["connection_id": connectionId])
            session.outbox.close(.policyViolation)  // (its close callback, later, finds the handshake begun)
            sendClose(code: .policyViolation, reason: "client message rate exceeded")
            return false
        }
        return true
    }

    private func receivedMessage(_ opcode: WebSocketOpcode, _ data: ByteBuffer) {
        guard let session else { return }
        guard opcode == .text else {
            session.outbox.enqueue(.error(code: "unsupported_frame", message: "send JSON text frames", now: WallClock.nowMs()))
            return
        }
        guard let text = String(validating: data.readableBytesView, as: UTF8.self) else { return fail(.dataInconsistentWithMessage) }
        guard let command = session.received(text: text, resumes: &resumeRate) else { return }
        guard let work = environment.work, work.submit({ await session.relay(command) }) else {
            session.answer(command, .refused(status: 503, code: "commands_busy", message: "too many commands in flight; try again"))
            return
        }
    }

    /// The client's close frame: answered (the handshake's second half) unless ours went out first, then the
    /// connection is closed.
    private func receivedClose(_ payload: ByteBuffer) {
        session?.outbox.close(.clientGone)
        guard case .open = state, let context else {
            state = .closed
            context?.close(promise: nil)
            return
        }
        state = .closed
        let frame = closeFrame(code: Self.answer(toClose: payload), reason: nil, allocator: context.channel.allocator)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in channel.close(promise: nil) }
        armCloseDeadline()  // the answer may sit behind data a client that stopped reading never takes
    }

    /// The code answering a client's close frame (RFC 6455 §7.4): 1000; 1002 for a payload that breaks the rules
    /// (one byte, a code that must not be sent); 1007 for a reason that is not UTF-8 (§8.1).
    static func answer(toClose payload: ByteBuffer) -> WebSocketErrorCode {
        var payload = payload
        guard payload.readableBytes > 0 else { return .normalClosure }
        guard let code = payload.readInteger(as: UInt16.self) else { return .protocolError }
        guard String(validating: payload.readableBytesView, as: UTF8.self) != nil else { return .dataInconsistentWithMessage }
        switch code {
        // Defined by RFC 6455 or registered with IANA since (1012–1014), and the ranges for libraries and applications.
        case 1000...1003, 1007...1014, 3000...4999: return .normalClosure
        default: return .protocolError
        }
    }

    /// Closes at once after a close frame with `code`: the client broke the protocol (1002, 1007, 1009).
    private func fail(_ code: WebSocketErrorCode) {
        guard let context else { return }
        session?.outbox.close(.clientGone)
        let wasOpen = state == .open
        state = .closed
        guard wasOpen else { return context.close(promise: nil) }
        let frame = closeFrame(code: code, reason: nil, allocator: context.channel.allocator)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in channel.close(promise: nil) }
        armCloseDeadline()
    }

    // MARK: Closing from our side

    /// The outbox closed: the close frame its reason calls for (none when the client is gone or the session ended).
    private func outboxClosed(_ reason: OutboxClosure) {
        switch reason {
        case .overflowed:
            environment.logger.info("subscriber too slow; closing", metadata: ["connection_id": connectionId])
            sendClose(code: .unknown(BridgeCloseCode.sendQueueOverflow), reason: "send queue overflow; reconnect with last_seq")
        case .shuttingDown:
            sendClose(code: .goingAway, reason: "server shutting down")
        case .policyViolation:
            sendClose(code: .policyViolation, reason: "client message rate exceeded")
        case .tokenExpired:
            environment.metrics.tokenExpiredCloses.increment()
            sendClose(code: .unknown(BridgeCloseCode.tokenExpired), reason: "token expired; reconnect with a fresh token and last_seq")
        case .finished, .clientGone:
            break
        }
    }

    /// Starts the closing handshake: our close frame, then the client's answer or, after `closeTimeout`, the
    /// connection closed regardless (a client that stopped reading would otherwise hold its slot for ever).
    private func sendClose(code: WebSocketErrorCode, reason: String) {
        guard case .open = state, let context else { return }
        state = .closing
        pingTimer?.cancel()
        let frame = closeFrame(code: code, reason: reason, allocator: context.channel.allocator)
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        armCloseDeadline()
    }

    /// Whatever way the connection is closing — our close frame, our answer to the client's, a protocol error's —
    /// it is closed after `closeTimeout` at the latest: the frame may never leave for a client that stopped reading,
    /// and such a client would hold its slot for ever.
    private func armCloseDeadline() {
        guard closeTimer == nil, !ended, let context else { return }
        let connectionId = self.connectionId
        let logger = environment.logger
        let channel = context.channel
        closeTimer = context.eventLoop.scheduleTask(in: environment.closeTimeout) {
            logger.info("subscriber did not finish closing in time; closing the connection", metadata: ["connection_id": connectionId])
            channel.close(promise: nil)
        }
    }

    private func closeFrame(code: WebSocketErrorCode, reason: String?, allocator: ByteBufferAllocator) -> WebSocketFrame {
        var data = allocator.buffer(capacity: 2 + (reason?.utf8.count ?? 0))
        data.write(webSocketErrorCode: code)
        if let reason { data.writeString(reason) }
        return WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
    }

    // MARK: Keeping the connection honest

    /// Pings every `pingInterval`; a client that left the last ping unanswered is gone (1001), like a half-open
    /// TCP connection whose writes still succeed.
    private func schedulePing() {
        guard let interval = environment.pingInterval, let context else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        pingTimer = context.eventLoop.scheduleTask(in: interval) { bound.value.ping() }
    }

    private func ping() {
        guard case .open = state, let context else { return }
        if unansweredPing != nil {
            environment.logger.info("subscriber did not answer a ping; closing", metadata: ["connection_id": connectionId])
            return sendClose(code: .goingAway, reason: "ping timeout")
        }
        var payload = context.channel.allocator.buffer(capacity: 16)
        var random = SystemRandomNumberGenerator()
        payload.writeInteger(random.next() as UInt64)
        payload.writeInteger(random.next() as UInt64)
        unansweredPing = payload
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: payload)), promise: nil)
        schedulePing()
    }
}

/// Work a subscriber connection has to wait for — a relayed command's acknowledgement by Kafka — run as child
/// tasks of this service (part of the application's service group), not as tasks of their own.
final class SubscriberWork: Service, Sendable {
    typealias Job = @Sendable () async -> Void
    private let jobs: AsyncStream<Job>
    private let continuation: AsyncStream<Job>.Continuation

    /// `capacity`: jobs submitted but not yet started by `run()` (it starts them as fast as they come, so this is
    /// only a bound on a burst; how many commands are in flight is `JobCommandRelay`'s limit).
    init(capacity: Int = 256) {
        (jobs, continuation) = AsyncStream.makeStream(of: Job.self, bufferingPolicy: .bufferingOldest(capacity))
    }

    /// Queues `job`; false if too many wait already or the service has stopped.
    func submit(_ job: @escaping Job) -> Bool {
        if case .enqueued = continuation.yield(job) { return true }
        return false
    }

    func run() async {
        await withDiscardingTaskGroup { group in
            for await job in jobs.cancelOnGracefulShutdown() {
                group.addTask { await job() }
            }
        }
        continuation.finish()
    }
}

import NIOCore
import NIOWebSocket
import Synchronization

/// Sends a subscriber's queued messages from its channel's event loop: an event fanned out to thousands of
/// subscribers costs one write of a shared, ready-made frame per subscriber — not a task woken per subscriber, a
/// hop into the event loop per message, or a frame header encoded per subscriber — and the messages of one
/// wake-up leave with one flush.
///
/// It writes only while the channel is writable (NIO's pending bytes under its high watermark); the rest stays in
/// the outbox, whose limits close it when the subscriber reads too slowly (4001), and the `FrameWriter` resumes
/// once the socket takes more.
enum SubscriberChannelDrain {
    /// Makes `channel`'s event loop deliver what `outbox` queues. On that event loop, once the WebSocket frame
    /// encoder is in the pipeline.
    static func attach(_ outbox: Outbox, to channel: any Channel, metrics: BridgeMetrics) throws {
        channel.eventLoop.preconditionInEventLoop()
        let pipeline = channel.pipeline.syncOperations
        let encoder = try pipeline.context(handlerType: WebSocketFrameEncoder.self)
        // Below the frame encoder (nearer the socket): messages go out as the frames `OutboundMessage` encoded
        // once for all subscribers. Above it, the connection's own frames (pongs, pings, close).
        let writer = FrameWriter(outbox: outbox, metrics: metrics)
        try pipeline.addHandler(writer, position: .before(encoder.handler))
        // Between the frame encoder and everything that may send a close frame (the connection, NIO's protocol
        // error handler), to see every close frame.
        try pipeline.addHandler(CloseFrameWatcher(outbox: outbox), position: .after(encoder.handler))
        let loop = LoopDrains.queue(of: channel.eventLoop)
        let bound = NIOLoopBound(writer, eventLoop: channel.eventLoop)
        outbox.drain { loop.schedule(bound) }
    }

    /// Writes a subscriber's queued messages, as ready-made frames, while the channel is writable; resumes when it
    /// becomes writable again.
    ///
    /// It holds the outbox until it is removed from the pipeline — the channel's close removes every handler —,
    /// which ends the cycle with the outbox's wake-up (which holds this writer; the outbox's close ends it too). Not
    /// weakly: a weak reference gives the outbox a side table, and every retain of it — on the ingest thread for each
    /// subscriber of each event, and here — took the runtime's slow path (`perf` with 10,000 subscribers: ~3 % of the
    /// bridge's samples, none since).
    final class FrameWriter: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = NIOAny
        typealias OutboundOut = ByteBuffer
        private var outbox: Outbox?
        private let metrics: BridgeMetrics
        private var context: ChannelHandlerContext?
        /// The channel's writability, as NIO last told every handler (it does so synchronously, from the write or
        /// flush that changes it): kept here so that a delivery does not read it from the channel, another cold
        /// object for each of 10,000 subscribers.
        private var writable = true

        init(outbox: Outbox, metrics: BridgeMetrics) {
            self.outbox = outbox
            self.metrics = metrics
        }

        func handlerAdded(context: ChannelHandlerContext) {
            self.context = context
            writable = context.channel.isWritable
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            self.context = nil
            outbox = nil
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            writable = context.channel.isWritable
            if writable { drain() }
            context.fireChannelWritabilityChanged()
        }

        /// Writes what is queued while the channel is writable, and flushes once; on the channel's event loop.
        func drain() {
            guard let context, let outbox else { return }
            var sent = 0
            var now: Int64?
            while writable, let message = outbox.take() {
                context.write(Self.wrapOutboundOut(message.wire), promise: nil)
                sent += 1
                if let occurredAt = message.occurredAt {
                    let at = now ?? WallClock.nowMs()
                    now = at
                    metrics.deliveryAge.record(.milliseconds(max(0, at.subtracting(saturating: occurredAt))))
                }
            }
            guard sent > 0 else { return }
            metrics.messagesSent.increment(by: Int64(sent))
            context.flush()
        }
    }

    /// The subscribers waiting for one event loop: an event fanned out to the thousands of subscribers that loop
    /// serves is one task on it, not one per subscriber.
    final class LoopDrains: Sendable {
        private let loop: any EventLoop
        private let waiting = Mutex<(writers: [NIOLoopBound<FrameWriter>], scheduled: Bool)>(([], false))
        /// One per event loop, for as long as the process runs: a few with the shared event loop group (a process
        /// that makes event loop groups over and over keeps each loop's entry).
        private static let queues = Mutex<[ObjectIdentifier: LoopDrains]>([:])

        private init(loop: any EventLoop) {
            self.loop = loop
        }

        static func queue(of loop: any EventLoop) -> LoopDrains {
            queues.withLock { queues in
                if let queue = queues[ObjectIdentifier(loop)] { return queue }
                let queue = LoopDrains(loop: loop)
                queues[ObjectIdentifier(loop)] = queue
                return queue
            }
        }

        /// Drains `writer`'s subscriber on this loop soon, with the others woken meanwhile.
        func schedule(_ writer: NIOLoopBound<FrameWriter>) {
            let first = waiting.withLock { waiting -> Bool in
                waiting.writers.append(writer)
                defer { waiting.scheduled = true }
                return !waiting.scheduled
            }
            if first { loop.execute { self.drainWaiting() } }
        }

        private func drainWaiting() {
            let writers = waiting.withLock { waiting in
                defer {
                    waiting.writers = []
                    waiting.scheduled = false
                }
                return waiting.writers
            }
            for writer in writers { writer.value.drain() }
        }
    }

    /// Stops the drain once a close frame goes out — the connection answering the client's close or closing on its
    /// own, NIO's protocol error handler —, as RFC 6455 sends nothing after it.
    final class CloseFrameWatcher: ChannelOutboundHandler, RemovableChannelHandler {
        typealias OutboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame
        private let outbox: Outbox

        init(outbox: Outbox) { self.outbox = outbox }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if unwrapOutboundIn(data).opcode == .connectionClose { outbox.close(.clientGone) }
            context.write(data, promise: promise)
        }
    }
}

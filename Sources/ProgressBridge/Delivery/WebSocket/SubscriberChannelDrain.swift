import NIOCore
import NIOWebSocket
import Synchronization

/// Sends a subscriber's queued messages from its channel's event loop: an event fanned out to thousands of
/// subscribers costs a write per subscriber, not a task woken per subscriber and a hop into the event loop per
/// message, and the messages of one wake-up leave with one flush.
///
/// It writes only while the channel is writable (NIO's pending bytes under its high watermark); the rest stays in
/// the outbox, whose limits close it when the subscriber reads too slowly (4001), and a `WritabilityHandler` at
/// the end of the pipeline resumes the drain once the socket takes more.
enum SubscriberChannelDrain {
    /// Makes `channel`'s event loop deliver what `outbox` queues.
    static func attach(_ outbox: Outbox, to channel: any Channel, metrics: BridgeMetrics) async throws {
        try await channel.eventLoop.submit {
            let pipeline = channel.pipeline.syncOperations
            try pipeline.addHandler(WritabilityHandler(outbox: outbox, metrics: metrics))
            // Between the frame encoder and the WebSocket handler's writer, to see every close frame it sends.
            if let encoder = try? pipeline.context(handlerType: WebSocketFrameEncoder.self) {
                try pipeline.addHandler(CloseFrameWatcher(outbox: outbox), position: .after(encoder.handler))
            }
        }.get()
        let loop = LoopDrains.queue(of: channel.eventLoop)
        outbox.drain { [weak outbox] in
            guard let outbox else { return }
            loop.schedule(Waiting(outbox: outbox, channel: channel, metrics: metrics))
        }
    }

    /// Writes what is queued while the channel is writable; on the channel's event loop.
    static func drain(_ outbox: Outbox, into channel: any Channel, metrics: BridgeMetrics) {
        var wrote = false
        while channel.isWritable, let message = outbox.take() {
            channel.write(WebSocketFrame(fin: true, opcode: .text, data: message.frame), promise: nil)
            metrics.messagesSent.increment()
            if let occurredAt = message.occurredAt {
                metrics.deliveryAge.record(.milliseconds(max(0, WallClock.nowMs().subtracting(saturating: occurredAt))))
            }
            wrote = true
        }
        if wrote { channel.flush() }
    }

    /// The outboxes waiting for one event loop: an event fanned out to the thousands of subscribers that loop
    /// serves is one task on it, not one per subscriber.
    struct Waiting: Sendable {
        let outbox: Outbox
        let channel: any Channel
        let metrics: BridgeMetrics
    }

    final class LoopDrains: Sendable {
        private let loop: any EventLoop
        private let waiting = Mutex<(outboxes: [Waiting], scheduled: Bool)>(([], false))
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

        /// Drains `outbox` on this loop soon, with the others woken meanwhile.
        func schedule(_ outbox: Waiting) {
            let first = waiting.withLock { waiting -> Bool in
                waiting.outboxes.append(outbox)
                defer { waiting.scheduled = true }
                return !waiting.scheduled
            }
            if first { loop.execute { self.drainWaiting() } }
        }

        private func drainWaiting() {
            let outboxes = waiting.withLock { waiting in
                defer {
                    waiting.outboxes = []
                    waiting.scheduled = false
                }
                return waiting.outboxes
            }
            for each in outboxes { SubscriberChannelDrain.drain(each.outbox, into: each.channel, metrics: each.metrics) }
        }
    }

    /// Stops the drain once a close frame goes out — the WebSocket handler answering the client's close, or
    /// closing on its own (an unanswered ping) —, as RFC 6455 sends nothing after it.
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

    /// Resumes the drain when the channel becomes writable again.
    final class WritabilityHandler: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = NIOAny
        private let outbox: Outbox
        private let metrics: BridgeMetrics

        init(outbox: Outbox, metrics: BridgeMetrics) {
            self.outbox = outbox
            self.metrics = metrics
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            if context.channel.isWritable { SubscriberChannelDrain.drain(outbox, into: context.channel, metrics: metrics) }
            context.fireChannelWritabilityChanged()
        }
    }
}

import DequeModule
import NIOCore
import NIOWebSocket
import Synchronization

/// Sends a subscriber's queued messages from its channel's event loop: an event fanned out to thousands of
/// subscribers costs one write of a shared, ready-made frame per subscriber — not a task woken per subscriber, a
/// hop into the event loop per message, or a frame header encoded per subscriber — and the messages of one
/// wake-up leave with one flush (a lone message goes straight to the socket, see `FrameWriter`).
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
        // Straight to the socket when it can be shown to be the channel's: nothing below the writer changes the bytes
        // (the bridge serves plain TCP; a TLS handler there would have to turn this off).
        SubscriberSocket.find(for: channel) { writer.adopt($0) }
        // Between the frame encoder and everything that may send a close frame (the connection, NIO's protocol
        // error handler), to see every close frame.
        try pipeline.addHandler(CloseFrameWatcher(outbox: outbox), position: .after(encoder.handler))
        let loop = LoopDrains.queue(of: channel.eventLoop)
        let bound = NIOLoopBound(writer, eventLoop: channel.eventLoop)
        let eventLoop = channel.eventLoop
        outbox.drain(with: { loop.schedule(bound) }, send: { message in eventLoop.inEventLoop && bound.value.send(message) })
    }

    /// Writes a subscriber's queued messages, as ready-made frames, while the channel is writable; resumes when it
    /// becomes writable again.
    ///
    /// A message goes straight to the socket (``SubscriberSocket``) when the writer has it and NIO has nothing of this
    /// channel's waiting to be written; otherwise, and for whatever the socket did not take at once, through NIO's
    /// write path, which finishes it when the socket drains. Every other write of the connection (its pongs, pings,
    /// close frame) passes through this handler on its way to the socket, so the writer knows when NIO may hold bytes:
    /// a message written straight to the socket never overtakes them.
    ///
    /// It holds the outbox until it is removed from the pipeline — the channel's close removes every handler —,
    /// which ends the cycle with the outbox's wake-up (which holds this writer; the outbox's close ends it too). Not
    /// weakly: a weak reference gives the outbox a side table, and every retain of it — on the ingest thread for each
    /// subscriber of each event, and here — took the runtime's slow path (`perf` with 10,000 subscribers: ~3 % of the
    /// bridge's samples, none since).
    final class FrameWriter: ChannelDuplexHandler, RemovableChannelHandler {
        typealias InboundIn = NIOAny
        typealias OutboundIn = NIOAny
        typealias OutboundOut = ByteBuffer
        private var outbox: Outbox?
        private let metrics: BridgeMetrics
        private var context: ChannelHandlerContext?
        /// The channel, for its `isActive` (an atomic NIO sets on the event loop); nil once the handler is removed.
        private var channel: (any Channel)?
        /// The channel's writability, as NIO last told every handler (it does so synchronously, from the write or
        /// flush that changes it): kept here so that a delivery does not read it from the channel, another cold
        /// object for each of 10,000 subscribers.
        private var writable = true
        /// The socket, once shown to be the channel's (see ``SubscriberSocket``).
        private var socket: SubscriberSocket?
        /// Something went to NIO's write path since NIO was last seen with nothing of this channel's waiting to be
        /// written: until NIO is asked again, messages go that way too. True at first: the connection's writes before
        /// this handler was added (the upgrade's response) did not pass through it.
        private var nioMayHoldBytes = true

        init(outbox: Outbox, metrics: BridgeMetrics) {
            self.outbox = outbox
            self.metrics = metrics
        }

        func handlerAdded(context: ChannelHandlerContext) {
            self.context = context
            channel = context.channel
            writable = context.channel.isWritable
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            self.context = nil
            channel = nil
            socket = nil
            outbox = nil
        }

        /// Writes to `socket` directly from now on (when NIO holds nothing of the channel's).
        func adopt(_ socket: SubscriberSocket) {
            guard context != nil else { return }
            self.socket = socket
        }

        /// The descriptor messages are written to directly, if any (tests).
        var directDescriptor: CInt? { socket?.descriptor }

        func channelInactive(context: ChannelHandlerContext) {
            socket = nil  // (the channel's `isActive` says so already; this does not rest on it alone)
            context.fireChannelInactive()
        }

        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            if mode == .all || mode == .output { socket = nil }
            context.close(mode: mode, promise: promise)
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            writable = context.channel.isWritable
            if writable { drain() }
            context.fireChannelWritabilityChanged()
        }

        /// The connection's own frames (and anything else written above this handler), on their way to NIO.
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            nioMayHoldBytes = true
            context.write(data, promise: promise)
        }

        /// Writes what is queued while the channel is writable, and flushes what went to NIO once; on the channel's
        /// event loop. A message alone may go straight to the socket; several go through NIO, which writes them with
        /// one `writev`.
        func drain() {
            guard let context, let outbox else { return }
            var sent = 0
            var flush = false
            var now: Int64?
            while writable, let (message, more) = outbox.takeNext() {
                if flush || more {
                    writeThroughNIO(message.wire, context: context)
                    flush = true
                } else {
                    flush = write(message, context: context)
                }
                sent += 1
                recordAge(of: message, now: &now)
            }
            guard sent > 0 else { return }
            metrics.messagesSent.increment(by: Int64(sent))
            if flush { context.flush() }
        }

        /// Writes `message` now, if the channel is writable; on the channel's event loop, with nothing queued before it.
        func send(_ message: OutboundMessage) -> Bool {
            guard writable, let context, outbox != nil else { return false }
            if write(message, context: context) { context.flush() }
            var now: Int64?
            recordAge(of: message, now: &now)
            metrics.messagesSent.increment()
            return true
        }

        /// Writes `message` to the socket if it may, and what the socket did not take (or all of it) to NIO; returns
        /// whether NIO was given something to flush.
        private func write(_ message: OutboundMessage, context: ChannelHandlerContext) -> Bool {
            // `isActive` last: NIO closes the descriptor on this event loop and marks the channel inactive before any
            // other code runs here, so an active channel's descriptor is still its own.
            if let socket, nioHoldsNothing(), channel?.isActive == true {
                switch socket.send(message.wire) {
                case .all:
                    return false
                case .part(let count):
                    metrics.socketWritesUnfinished.increment()
                    var rest = message.wire
                    rest.moveReaderIndex(forwardBy: count)
                    writeThroughNIO(rest, context: context)
                    return true
                case .failed:
                    break  // nothing was sent: NIO's write tries again, and closes the channel on the error it meets
                }
            }
            writeThroughNIO(message.wire, context: context)
            return true
        }

        private func writeThroughNIO(_ bytes: ByteBuffer, context: ChannelHandlerContext) {
            nioMayHoldBytes = true
            context.write(Self.wrapOutboundOut(bytes), promise: nil)
        }

        /// Whether NIO holds no bytes of this channel waiting to be written (asked only after something went its way).
        private func nioHoldsNothing() -> Bool {
            guard nioMayHoldBytes else { return true }
            guard let waiting = try? channel?.syncOptions?.getOption(.bufferedWritableBytes), waiting == 0 else { return false }
            nioMayHoldBytes = false
            return true
        }

        private func recordAge(of message: OutboundMessage, now: inout Int64?) {
            guard let occurredAt = message.occurredAt else { return }
            let at = now ?? WallClock.nowMs()
            now = at
            metrics.deliveryAge.record(.milliseconds(max(0, at.subtracting(saturating: occurredAt))))
        }
    }

    /// One event loop's queue: the job messages for its subscribers, and the subscribers waiting to be written. An
    /// event of a job watched by thousands of subscribers on this loop is one post here and one task on the loop — not
    /// a message queued for each subscriber by the thread that applied the event, under the job's lock (which cost
    /// ingest ~1.3 µs a subscriber, each outbox's memory passed between two cores). A subscriber's other messages
    /// (acknowledgements, snapshots, replays, answers) go straight to its outbox, under its own limits.
    ///
    /// The loop takes at most `postsPerRun` posts, or `deliveriesPerRun` subscribers' messages, at a time (but always
    /// one post), so that its other work (reads, pings, timers, new connections) runs in between. One post alone is
    /// written to each subscriber at once when nothing waits before it; several are queued first — `job.progress`
    /// conflated as in any outbox — and each subscriber then written once.
    ///
    /// Bounded: past `maxPosts` posts, `maxDeliveries` subscribers' messages or `maxBytes` bytes of messages waiting
    /// (a loop that far behind), a post is refused and its subscribers are closed as overflowed (4001), as a subscriber
    /// whose own queue overflows is; a post into an empty queue is always taken. Posts are not counted in
    /// `send_queue_bytes` until the loop queues them.
    final class LoopDrains: Sendable {
        /// A job's message for these subscribers of the job.
        private struct Post {
            let outboxes: [Outbox]
            let message: OutboundMessage
        }

        private struct Pending {
            var posts = Deque<Post>()
            /// Of the posts waiting or being applied: bytes of their messages (each counted once), and subscribers.
            var bytes = 0
            var deliveries = 0
            var writers: [NIOLoopBound<FrameWriter>] = []
            /// A task to run the queue is on the loop (or running).
            var scheduled = false
        }

        /// The most posts waiting for one loop.
        static let maxPosts = 65_536
        /// The most subscribers' messages waiting for one loop (a post for N subscribers counts N).
        static let maxDeliveries = 1 << 20
        /// The most bytes of messages waiting for one loop (each post's message counted once).
        static let maxBytes = 64 << 20
        /// The most posts the loop takes in one task.
        static let postsPerRun = 64
        /// The most subscribers' messages the loop takes in one task (but always one post): ~50 ms of writes here.
        static let deliveriesPerRun = 4_096

        private let loop: any EventLoop
        private let pending = Mutex(Pending())
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

        /// Posts waiting for the loop.
        var pendingPosts: Int { pending.withLock { $0.posts.count } }

        /// Hands a job's `message` for `outboxes` (subscribers of the job this loop delivers) to the loop, behind
        /// every post before it; refuses it (see the type) when the loop is too far behind.
        func post(_ message: OutboundMessage, to outboxes: [Outbox]) {
            let size = message.byteCount
            let (taken, first) = pending.withLock { p -> (Bool, Bool) in
                if p.deliveries > 0,
                    p.posts.count >= Self.maxPosts || p.bytes > Self.maxBytes - size || p.deliveries > Self.maxDeliveries - outboxes.count
                {
                    return (false, false)
                }
                p.posts.append(Post(outboxes: outboxes, message: message))
                p.bytes += size
                p.deliveries += outboxes.count
                defer { p.scheduled = true }
                return (true, !p.scheduled)
            }
            guard taken else {
                for outbox in outboxes { outbox.refused() }
                return
            }
            if first { loop.execute { self.run() } }
        }

        /// Drains `writer`'s subscriber on this loop soon, with the others woken meanwhile.
        func schedule(_ writer: NIOLoopBound<FrameWriter>) {
            let first = pending.withLock { p -> Bool in
                p.writers.append(writer)
                defer { p.scheduled = true }
                return !p.scheduled
            }
            if first { loop.execute { self.run() } }
        }

        /// Applies up to `postsPerRun` posts (`deliveriesPerRun` messages), then writes every subscriber woken (by them
        /// among others); once more, as another task, if more is waiting — the loop's other work gets its turn between.
        private func run() {
            let batch = pending.withLock { p -> [Post] in
                var count = 0
                var deliveries = 0
                while count < min(p.posts.count, Self.postsPerRun),
                    count == 0 || deliveries + p.posts[count].outboxes.count <= Self.deliveriesPerRun
                {
                    deliveries += p.posts[count].outboxes.count
                    count += 1
                }
                defer { p.posts.removeFirst(count) }
                return Array(p.posts.prefix(count))
            }
            let direct = batch.count == 1
            for post in batch {
                for outbox in post.outboxes { outbox.enqueueJobMessage(post.message, direct: direct) }
            }
            let writers = pending.withLock { p in
                p.bytes -= batch.reduce(0) { $0 + $1.message.byteCount }
                p.deliveries -= batch.reduce(0) { $0 + $1.outboxes.count }
                defer { p.writers = [] }
                return p.writers
            }
            for writer in writers { writer.value.drain() }
            let again = pending.withLock { p -> Bool in
                p.scheduled = !p.posts.isEmpty || !p.writers.isEmpty
                return p.scheduled
            }
            if again { loop.execute { self.run() } }
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

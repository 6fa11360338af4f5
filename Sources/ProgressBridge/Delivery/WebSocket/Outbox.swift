import DequeModule
import NIOCore
import Synchronization

/// Why an outbox stopped delivering.
public enum OutboxClosure: Sendable, Equatable {
    /// The subscriber went away or the session ended normally.
    case finished
    /// The subscriber read too slowly and its queue overflowed (in messages or in bytes).
    case overflowed
    /// The bridge is shutting down.
    case shuttingDown
    /// The client broke a limit (message rate).
    case policyViolation
    /// The subscriber's token expired.
    case tokenExpired
    /// The client closed, reset or broke the protocol: nothing more can be sent.
    case clientGone
}

/// A subscriber's bounded send queue. Producers never wait: a newer `job.progress` replaces an
/// unsent one of the same job (conflation), and a queue over its message or byte capacity closes the
/// outbox (`.overflowed`), so one slow browser can neither stall ingest nor grow memory without bound.
/// One message is always accepted into an empty queue, so a large snapshot still reaches a client that reads.
public final class Outbox: Sendable {
    private struct State {
        var queue = Deque<OutboundMessage>()
        var bytes = 0
        var closure: OutboxClosure?
        /// Told once, when the outbox closes (the connection sends the close frame its reason calls for).
        var onClose: (@Sendable (OutboxClosure) -> Void)?
        /// Delivery driven from outside (the subscriber's event loop): called when a message lands and no drain is
        /// under way.
        var wake: (@Sendable () -> Void)?
        /// A drain is scheduled or running: it takes messages until `take()` finds none.
        var draining = false
        /// Writes a job's message at once if the channel takes it now (on its event loop); see `enqueueJobMessage`.
        var send: (@Sendable (OutboundMessage) -> Bool)?
        /// The job's messages up to this `seq` are not queued for a broadcast (see `skip(through:)`).
        var skipThrough: Int64?

        /// Closes as overflowed, emptying the queue: how many messages that drops (the one that did not fit among them),
        /// the bytes it releases, and who is to be told.
        mutating func overflow() -> (dropped: Int, released: Int, watcher: (@Sendable (OutboxClosure) -> Void)?) {
            let dropped = queue.count + 1
            let released = bytes
            queue.removeAll()
            bytes = 0
            closure = .overflowed
            wake = nil  // (they hold the channel, whose pipeline holds this outbox)
            send = nil
            var watcher: (@Sendable (OutboxClosure) -> Void)?
            swap(&watcher, &onClose)
            return (dropped, released, watcher)
        }

        mutating func popFirst() -> OutboundMessage? {
            guard let first = queue.popFirst() else { return nil }
            bytes -= first.byteCount
            return first
        }
    }

    private let state = Mutex(State())
    /// The most messages held for this subscriber.
    public let capacity: Int
    /// The most bytes held for this subscriber.
    public let byteCapacity: Int
    private let metrics: BridgeMetrics

    /// The queue of the event loop that delivers this outbox, if one does: a job's message reaches all of the job's
    /// subscribers on that loop as one post there (see `JobChannel.State.deliver`). Every other message is queued at
    /// once, on the caller's thread.
    let route: SubscriberChannelDrain.LoopDrains?

    /// Creates an outbox holding at most `capacity` messages and `byteCapacity` bytes; messages are queued at once.
    public convenience init(capacity: Int, byteCapacity: Int = .max, metrics: BridgeMetrics) {
        self.init(capacity: capacity, byteCapacity: byteCapacity, metrics: metrics, route: nil)
    }

    /// Creates an outbox delivered on `eventLoop`: a job's message is one post there for all of the job's subscribers
    /// on that loop.
    public convenience init(capacity: Int, byteCapacity: Int = .max, metrics: BridgeMetrics, deliveredOn eventLoop: any EventLoop) {
        self.init(capacity: capacity, byteCapacity: byteCapacity, metrics: metrics, route: SubscriberChannelDrain.LoopDrains.queue(of: eventLoop))
    }

    private init(capacity: Int, byteCapacity: Int = .max, metrics: BridgeMetrics, route: SubscriberChannelDrain.LoopDrains?) {
        self.capacity = capacity
        self.byteCapacity = byteCapacity
        self.metrics = metrics
        self.route = route
    }

    deinit {
        let held = state.withLock { $0.bytes }
        if held != 0 { metrics.queuedBytes.decrement(by: Double(held)) }
    }

    /// Why the outbox closed, if it did.
    public var closure: OutboxClosure? { state.withLock { $0.closure } }

    /// Bytes queued now.
    public var queuedBytes: Int { state.withLock { $0.bytes } }

    /// Queues a message; never blocks.
    public func enqueue(_ message: OutboundMessage) {
        enqueueNow(message, ofJob: false)
    }

    /// Queues one of the job's own messages (an applied event) for a broadcast, unless the subscriber has it already
    /// (see `skip(through:)`). `direct`: on the channel's event loop, with nothing queued before it and no drain under
    /// way, it is written at once (`drain(with:send:)`) and never queued.
    func enqueueJobMessage(_ message: OutboundMessage, direct: Bool) {
        enqueueNow(message, ofJob: true, direct: direct)
    }

    /// From now on, the job's messages up to `seq` are not queued for a broadcast: the subscriber has them (it resumed
    /// from a replica further ahead), or a snapshot or replay queued now covers them — the ones still on their way to
    /// the event loop are dropped there. The first message after `seq` ends the skipping.
    func skip(through seq: Int64) {
        state.withLock { $0.skipThrough = seq }
    }

    /// Closes the outbox as overflowed (4001): a job's message could not be queued for it, its event loop being that
    /// far behind (see `SubscriberChannelDrain.LoopDrains`).
    func refused() {
        let overflow = state.withLock { s in s.closure == nil ? s.overflow() : nil }
        guard let (dropped, released, watcher) = overflow else { return }  // (closed already)
        watcher?(.overflowed)
        if released != 0 { metrics.queuedBytes.decrement(by: Double(released)) }
        metrics.sendQueueOverflows.increment()
        metrics.messagesDropped.increment(by: Int64(dropped))
    }

    /// Queues `message` (`ofJob`: a job's message, subject to `skip(through:)`; `direct`: see `enqueueJobMessage`).
    private func enqueueNow(_ message: OutboundMessage, ofJob: Bool, direct allowed: Bool = false) {
        var direct: (@Sendable (OutboundMessage) -> Bool)?
        var conflated = false
        var dropped = 0
        var overflowed = false
        var byteChange = 0
        var watcher: (@Sendable (OutboxClosure) -> Void)?
        var wake: (@Sendable () -> Void)?
        state.withLock { s in
            guard s.closure == nil else { return }
            if ofJob, let skip = s.skipThrough {
                if message.seq <= skip { return }
                s.skipThrough = nil
            }
            if allowed, s.queue.isEmpty, !s.draining, let send = s.send {
                direct = send
                return
            }
            if message.isConflatable,
                let index = s.queue.firstIndex(where: { $0.isConflatable && $0.jobId == message.jobId })
            {
                if s.queue[index].seq >= message.seq {  // the one waiting is as new: this one is not wanted
                    conflated = true
                    return
                }
                let replaced = s.queue.remove(at: index)
                s.bytes -= replaced.byteCount
                byteChange -= replaced.byteCount
                conflated = true
            }
            let size = message.byteCount
            if s.queue.count >= capacity || (!s.queue.isEmpty && s.bytes > byteCapacity - size) {
                let released: Int
                (dropped, released, watcher) = s.overflow()
                byteChange -= released
                overflowed = true
                return
            }
            s.queue.append(message)
            s.bytes += size
            byteChange += size
            if !s.draining, let drain = s.wake {
                s.draining = true
                wake = drain
            }
        }
        if let direct {
            if !direct(message) { enqueueNow(message, ofJob: false) }  // the channel takes no more for now
            return
        }
        wake?()
        watcher?(.overflowed)
        if byteChange != 0 { metrics.queuedBytes.increment(by: Double(byteChange)) }
        if conflated { metrics.messagesConflated.increment() }
        if overflowed {
            metrics.sendQueueOverflows.increment()
            metrics.messagesDropped.increment(by: Int64(dropped))
        }
    }

    /// Hands delivery to `wake`, called (outside the lock) whenever a message lands while no drain is under way;
    /// the drain then takes messages with `take()` until it finds none. So that no task
    /// has to be woken per message: the subscriber's event loop drains it (see `SubscriberChannelDrain`).
    /// `send`, if given, writes a job's message at once when nothing is queued before it (see `enqueueJobMessage`),
    /// returning whether it did.
    public func drain(with wake: @escaping @Sendable () -> Void, send: (@Sendable (OutboundMessage) -> Bool)? = nil) {
        let now: (@Sendable () -> Void)? = state.withLock { s in
            guard s.closure == nil else { return nil }
            s.wake = wake
            s.send = send
            guard !s.queue.isEmpty, !s.draining else { return nil }
            s.draining = true
            return wake
        }
        now?()
    }

    /// The next message for the drain, or `nil` when the queue is empty (the next message wakes the drain again).
    /// A drain that stops before `nil` (the socket takes no more for now) must come back on its own.
    public func take() -> OutboundMessage? {
        takeNext()?.message
    }

    /// As `take()`, and whether another message is queued behind the one taken.
    func takeNext() -> (message: OutboundMessage, more: Bool)? {
        let next: (message: OutboundMessage, more: Bool)? = state.withLock { s in
            if let first = s.popFirst() { return (first, !s.queue.isEmpty) }
            s.draining = false
            return nil
        }
        if let next { metrics.queuedBytes.decrement(by: Double(next.message.byteCount)) }
        return next
    }

    /// Queues several messages in order.
    public func enqueue(contentsOf messages: some Sequence<OutboundMessage>) {
        for message in messages { enqueue(message) }
    }

    /// Stops delivery; the drain finds nothing more (but what is queued, for `.finished`). The first reason given wins.
    public func close(_ reason: OutboxClosure) {
        var released = 0
        var watcher: (@Sendable (OutboxClosure) -> Void)?
        var closure = reason
        state.withLock { s in
            if s.closure == nil { s.closure = reason }
            closure = s.closure ?? reason
            if reason != .finished {  // nobody will send what is queued
                released = s.bytes
                s.queue.removeAll()
                s.bytes = 0
            }
            swap(&watcher, &s.onClose)
            s.wake = nil  // (it holds the channel, whose pipeline holds this outbox)
            s.send = nil
        }
        watcher?(closure)
        if released != 0 { metrics.queuedBytes.decrement(by: Double(released)) }
    }

    /// Calls `handler` once, with the reason, when the outbox closes — at once (on this thread) if it is closed
    /// already. One handler at a time; a later one replaces it. Called outside the outbox's lock.
    public func whenClosed(_ handler: @escaping @Sendable (OutboxClosure) -> Void) {
        let closedAlready: OutboxClosure? = state.withLock { s in
            if let closure = s.closure { return closure }
            s.onClose = handler
            return nil
        }
        if let closedAlready { handler(closedAlready) }
    }
}

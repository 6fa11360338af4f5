import DequeModule
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

    /// Creates an outbox holding at most `capacity` messages and `byteCapacity` bytes.
    public init(capacity: Int, byteCapacity: Int = .max, metrics: BridgeMetrics) {
        self.capacity = capacity
        self.byteCapacity = byteCapacity
        self.metrics = metrics
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
        var conflated = false
        var dropped = 0
        var overflowed = false
        var byteChange = 0
        var watcher: (@Sendable (OutboxClosure) -> Void)?
        var wake: (@Sendable () -> Void)?
        state.withLock { s in
            guard s.closure == nil else { return }
            if message.isConflatable,
                let index = s.queue.firstIndex(where: { $0.isConflatable && $0.jobId == message.jobId })
            {
                let replaced = s.queue.remove(at: index)
                s.bytes -= replaced.byteCount
                byteChange -= replaced.byteCount
                conflated = true
            }
            let size = message.byteCount
            if s.queue.count >= capacity || (!s.queue.isEmpty && s.bytes > byteCapacity - size) {
                dropped = s.queue.count + 1
                byteChange -= s.bytes
                s.queue.removeAll()
                s.bytes = 0
                s.closure = .overflowed
                s.wake = nil
                swap(&watcher, &s.onClose)
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
    public func drain(with wake: @escaping @Sendable () -> Void) {
        let now: (@Sendable () -> Void)? = state.withLock { s in
            guard s.closure == nil else { return nil }
            s.wake = wake
            guard !s.queue.isEmpty, !s.draining else { return nil }
            s.draining = true
            return wake
        }
        now?()
    }

    /// The next message for the drain, or `nil` when the queue is empty (the next message wakes the drain again).
    /// A drain that stops before `nil` (the socket takes no more for now) must come back on its own.
    public func take() -> OutboundMessage? {
        let message: OutboundMessage? = state.withLock { s in
            if let first = s.popFirst() { return first }
            s.draining = false
            return nil
        }
        if let message { metrics.queuedBytes.decrement(by: Double(message.byteCount)) }
        return message
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

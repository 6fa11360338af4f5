import DequeModule
import Synchronization

/// Why an outbox stopped delivering.
public enum OutboxClosure: Sendable, Equatable {
    /// The subscriber went away or the session ended normally.
    case finished
    /// The subscriber read too slowly and its queue overflowed.
    case overflowed
    /// The bridge is shutting down.
    case shuttingDown
    /// The client broke a limit (message rate).
    case policyViolation
}

/// A subscriber's bounded send queue. Producers never wait: a newer `job.progress` replaces an
/// unsent one of the same job (conflation), and a full queue closes the outbox (`.overflowed`),
/// so one slow browser can neither stall ingest nor grow memory without bound.
public final class Outbox: Sendable {
    private struct State {
        var queue = Deque<OutboundMessage>()
        var waiter: CheckedContinuation<OutboundMessage?, Never>?
        var closure: OutboxClosure?
    }

    private let state = Mutex(State())
    /// The most messages held for this subscriber.
    public let capacity: Int
    private let metrics: BridgeMetrics

    /// Creates an outbox holding at most `capacity` messages.
    public init(capacity: Int, metrics: BridgeMetrics) {
        self.capacity = capacity
        self.metrics = metrics
    }

    /// Why the outbox closed, if it did.
    public var closure: OutboxClosure? { state.withLock { $0.closure } }

    /// Queues a message; never blocks.
    public func enqueue(_ message: OutboundMessage) {
        var conflated = false
        var dropped = 0
        var overflowed = false
        let waiter: CheckedContinuation<OutboundMessage?, Never>? = state.withLock { s in
            guard s.closure == nil else { return nil }
            if let waiter = s.waiter {
                s.waiter = nil
                return waiter  // nothing queued: hand it straight to the writer
            }
            if message.isConflatable,
                let index = s.queue.firstIndex(where: { $0.isConflatable && $0.jobId == message.jobId })
            {
                s.queue.remove(at: index)
                conflated = true
            }
            if s.queue.count >= capacity {
                dropped = s.queue.count + 1
                s.queue.removeAll()
                s.closure = .overflowed
                overflowed = true
                return nil
            }
            s.queue.append(message)
            return nil
        }
        if let waiter { waiter.resume(returning: message) }
        if conflated { metrics.messagesConflated.increment() }
        if overflowed {
            metrics.sendQueueOverflows.increment()
            metrics.messagesDropped.increment(by: Int64(dropped))
        }
    }

    /// Queues several messages in order.
    public func enqueue(contentsOf messages: some Sequence<OutboundMessage>) {
        for message in messages { enqueue(message) }
    }

    /// The next message to send, waiting for one; `nil` once the outbox is closed.
    public func next() async -> OutboundMessage? {
        await withCheckedContinuation { (continuation: CheckedContinuation<OutboundMessage?, Never>) in
            let ready: OutboundMessage?? = state.withLock { s in
                if let first = s.queue.popFirst() { return .some(first) }
                if s.closure != nil { return .some(nil) }
                s.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Stops delivery; a waiting `next()` returns `nil`. The first reason given wins.
    public func close(_ reason: OutboxClosure) {
        let waiter = state.withLock { s -> CheckedContinuation<OutboundMessage?, Never>? in
            if s.closure == nil { s.closure = reason }
            if reason != .finished { s.queue.removeAll() }
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: nil)
    }
}

import DequeModule
import ProgressAggregation
import Synchronization

/// What this replica answered to requests with an `Idempotency-Key`, so that a retry gets the same answer without a
/// second publish. Bounded in entries and in time (the oldest go first); a retry through another replica publishes
/// again, with the same command id (see `JobCommand.commandId`).
public final class IdempotencyCache<Answer: Sendable>: Sendable {
    /// A remembered answer and what it answered (a key reused for another request is refused).
    public struct Entry: Sendable {
        public let fingerprint: String
        public let answer: Answer
        let at: Int64
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var order = Deque<(key: String, at: Int64)>()
    }

    private let state = Mutex(State())
    /// Entries kept at most. Default 10,000.
    public let capacity: Int
    /// How long an answer is remembered (ms). Default 24 h.
    public let lifetimeMs: Int64

    public init(capacity: Int = 10_000, lifetimeMs: Int64 = 86_400_000) {
        self.capacity = max(1, capacity)
        self.lifetimeMs = lifetimeMs
    }

    /// The answer remembered for `key`, if any and not expired at `now`.
    public func lookup(_ key: String, now: Int64) -> Entry? {
        state.withLock { s in
            evict(&s, now: now)
            return s.entries[key]
        }
    }

    /// Remembers `answer` for `key` (a key already remembered keeps its first answer).
    public func remember(_ key: String, fingerprint: String, answer: Answer, now: Int64) {
        state.withLock { s in
            evict(&s, now: now)
            guard s.entries[key] == nil else { return }
            s.entries[key] = Entry(fingerprint: fingerprint, answer: answer, at: now)
            s.order.append((key, now))
            while s.order.count > capacity, let oldest = s.order.popFirst() { s.entries[oldest.key] = nil }
        }
    }

    /// Entries held now.
    public var count: Int { state.withLock { $0.entries.count } }

    private func evict(_ s: inout State, now: Int64) {
        while let oldest = s.order.first, now.subtracting(saturating: oldest.at) > lifetimeMs {
            s.order.removeFirst()
            s.entries[oldest.key] = nil
        }
    }
}

import Synchronization

/// Caps WebSocket connections in total, per client address and per token subject (`sub`), so neither one
/// host nor one user — nor everyone behind one ingress — can take them all.
public final class ConnectionLimiter: Sendable {
    /// Why a connection was not admitted.
    public enum Refusal: Sendable, Equatable {
        case total(Int)
        case perAddress(Int)
        case perSubject(Int)

        /// For the close frame's reason.
        var reason: String {
            switch self {
            case .total(let n): "server at its limit of \(n) connections"
            case .perAddress(let n): "more than \(n) connections from one address"
            case .perSubject(let n): "more than \(n) connections for one token subject"
            }
        }
    }

    private struct State {
        var total = 0
        var perAddress: [String: Int] = [:]
        var perSubject: [String: Int] = [:]
    }

    private let state = Mutex(State())
    let maxTotal: Int
    let maxPerAddress: Int
    let maxPerSubject: Int
    private let metrics: BridgeMetrics?

    public init(maxTotal: Int, maxPerAddress: Int, maxPerSubject: Int = .max, metrics: BridgeMetrics? = nil) {
        self.maxTotal = maxTotal
        self.maxPerAddress = maxPerAddress
        self.maxPerSubject = maxPerSubject
        self.metrics = metrics
    }

    /// Admits a connection from `address` (and for `subject`, when the token has one), or says why not.
    /// Pair every admission with `release` with the same arguments.
    public func admit(_ address: String, subject: String? = nil) -> Refusal? {
        let refusal = state.withLock { s -> Refusal? in
            if s.total >= maxTotal { return .total(maxTotal) }
            let fromAddress = s.perAddress[address, default: 0]
            if fromAddress >= maxPerAddress { return .perAddress(maxPerAddress) }
            if let subject, s.perSubject[subject, default: 0] >= maxPerSubject { return .perSubject(maxPerSubject) }
            s.total += 1
            s.perAddress[address] = fromAddress + 1
            if let subject { s.perSubject[subject, default: 0] += 1 }
            return nil
        }
        if refusal == nil { metrics?.limiterSlots.increment() }
        return refusal
    }

    /// Ends an admitted connection.
    public func release(_ address: String, subject: String? = nil) {
        state.withLock { s in
            s.total -= 1
            let remaining = s.perAddress[address, default: 1] - 1
            s.perAddress[address] = remaining > 0 ? remaining : nil
            if let subject {
                let left = s.perSubject[subject, default: 1] - 1
                s.perSubject[subject] = left > 0 ? left : nil
            }
        }
        metrics?.limiterSlots.decrement()
    }
}

/// A token bucket for client → server messages: `rate` per second, bursts up to `burst`.
struct MessageRateLimit {
    let rate: Double
    let burst: Double
    private var tokens: Double
    private var last: ContinuousClock.Instant

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = .now
    }

    /// Takes one token; false when the client sends faster than allowed.
    mutating func allow(now: ContinuousClock.Instant = .now) -> Bool {
        let elapsed = now - last
        last = now
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(burst, tokens + seconds * rate)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

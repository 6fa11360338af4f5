import Synchronization

/// Caps WebSocket connections in total and per client address, so one host cannot take them all.
public final class ConnectionLimiter: Sendable {
    /// Why a connection was not admitted.
    public enum Refusal: Sendable, Equatable {
        case total(Int)
        case perAddress(Int)
    }

    private struct State {
        var total = 0
        var perAddress: [String: Int] = [:]
    }

    private let state = Mutex(State())
    let maxTotal: Int
    let maxPerAddress: Int

    public init(maxTotal: Int, maxPerAddress: Int) {
        self.maxTotal = maxTotal
        self.maxPerAddress = maxPerAddress
    }

    /// Admits a connection from `address`, or says why not. Pair every admission with `release`.
    public func admit(_ address: String) -> Refusal? {
        state.withLock { s in
            if s.total >= maxTotal { return .total(maxTotal) }
            let current = s.perAddress[address, default: 0]
            if current >= maxPerAddress { return .perAddress(maxPerAddress) }
            s.total += 1
            s.perAddress[address] = current + 1
            return nil
        }
    }

    /// Ends an admitted connection.
    public func release(_ address: String) {
        state.withLock { s in
            s.total -= 1
            let remaining = s.perAddress[address, default: 1] - 1
            s.perAddress[address] = remaining > 0 ? remaining : nil
        }
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

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why one try to subscribe failed.
enum ConnectFailure: Error, Sendable, Hashable {
    /// The bridge answered the upgrade with this HTTP status.
    case refused(status: Int)
    /// The WebSocket opened but closed before the snapshot (with this close code, `nil`: without a close frame);
    /// 1013 is the bridge's connection limit.
    case closedBeforeSnapshot(code: UInt16?)
    /// The connection closed before the upgrade was answered (e.g. the bridge's HTTP connection cap).
    case closedDuringHandshake
    /// No snapshot within the handshake timeout.
    case timedOut
    /// The TCP connect failed (refused, unreachable, …), described briefly.
    case connect(String)
    /// Anything else, described briefly.
    case other(String)

    /// A short reason for the report.
    var reason: String {
        switch self {
        case .refused(let status): "HTTP \(status)"
        case .closedBeforeSnapshot(let code): code.map { "closed \($0) before snapshot" } ?? "closed before snapshot"
        case .closedDuringHandshake: "closed during handshake"
        case .timedOut: "handshake timeout"
        case .connect(let why): "connect: \(why)"
        case .other(let why): why
        }
    }

    /// Whether another try may succeed: not for refusals of the request itself (bad job id, token, origin).
    var isRetryable: Bool {
        switch self {
        case .refused(let status): status == 408 || status == 429 || status >= 500
        case .closedBeforeSnapshot(let code): code != 1008 && code != 4401
        default: true
        }
    }

    /// A short description of a socket call's `errno`.
    static func brief(errno code: Int32) -> String {
        switch code {
        case ECONNREFUSED: "connection refused"
        case ECONNRESET: "connection reset"
        case ETIMEDOUT: "timed out"
        case EADDRNOTAVAIL: "no local address/port left"
        case EMFILE, ENFILE: "too many open files"
        case ENETUNREACH, EHOSTUNREACH: "unreachable"
        default: "errno \(code)"
        }
    }
}

import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a load run does: how many subscribers of which jobs, against which bridge, for how long.
public struct LoadConfiguration: Sendable {
    /// The bridge's WebSocket URL, `ws://HOST:PORT/PATH`. Only `ws` (this client has no TLS: reach a deployed bridge
    /// on its plain port, e.g. through `kubectl port-forward`). Default `ws://127.0.0.1:8765/`.
    public var url = "ws://127.0.0.1:8765/"
    /// The jobs to watch: connection *i* subscribes to `jobIds[i % jobIds.count]`. At least one.
    public var jobIds: [String]
    /// Connections to open. Default 100.
    public var connections = 100
    /// The measurement window. It opens once every connection is made (or has failed for good) and has received its
    /// `job.snapshot`. Default 30 s.
    public var duration: Duration = .seconds(30)
    /// How long connections keep reading after the window before the delivery audit, so that a lagging but lossless
    /// connection catches up. Messages read then count for the audit only, not for latency or throughput. Default 2 s.
    public var drain: Duration = .seconds(2)
    /// A bearer token, sent as `&token=` (for a bridge with authentication); never printed. Default none.
    public var token: String?
    /// Handshakes (TCP connect, HTTP upgrade, snapshot) in flight at once. Default 200.
    public var concurrentHandshakes = 200
    /// Tries per connection before it counts as failed (refusals that retrying cannot cure, like HTTP 401/403, are
    /// not retried). Default 3.
    public var connectAttempts = 3
    /// How long one try may take, from the TCP connect to the snapshot. Default 10 s.
    public var handshakeTimeout: Duration = .seconds(10)
    /// What carries the connections. Default ``LoadEngine/sockets`` on Linux, ``LoadEngine/nio`` elsewhere.
    public var engine = LoadEngine.platformDefault
    /// The socket engine's pace: each of its threads reads at most once per interval, and what arrives in between
    /// waits for its next round. Latencies it measures are then late by up to about this much (the timer's slack), never early; in return a
    /// bridge on the same machine is not made to wake a client thread for nearly every message it writes, a cost
    /// (the wake-up, then the switch to the woken thread) that falls on the bridge's `write` and that subscribers on
    /// other machines never cause. `.zero`: read as soon as anything arrives. The NIO engine reads as soon as anything
    /// arrives, whatever this says. Default 1 ms, the resolution of the events' `occurred_at` stamps; at most 1 s.
    public var readInterval: Duration = .milliseconds(1)
    /// Threads carrying the connections (event loops, or the socket engine's epoll threads). Default one per core.
    public var eventLoopThreads = System.coreCount
    /// How often progress is reported. Default 1 s.
    public var progressInterval: Duration = .seconds(1)
    /// Largest message accepted once its fragments are put together (snapshots are the big ones). Default 16 MiB.
    public var maxMessageBytes = 16 << 20
    /// The `connection_id` of connection *i* is this prefix, `-` and *i*. Default `bridge-load-PID`.
    public var connectionIdPrefix = "bridge-load-\(getpid())"

    /// The longest duration, drain and handshake timeout accepted.
    static let longest = Duration.seconds(365 * 24 * 3600)

    /// A configuration with the defaults, watching `jobIds`.
    public init(jobIds: [String]) {
        self.jobIds = jobIds
    }

    /// Checks the settings; throws ``LoadError/invalidConfiguration(_:)`` naming the first bad one.
    public func validate() throws {
        func require(_ condition: Bool, _ message: String) throws {
            if !condition { throw LoadError.invalidConfiguration(message) }
        }
        try require(!jobIds.isEmpty, "at least one job id is needed")
        try require(jobIds.allSatisfy { !$0.isEmpty }, "job ids must not be empty")
        try require(connections >= 1, "connections must be at least 1")
        // Bounded above too: deadlines are the clock's now plus these, which must not overflow.
        try require(duration >= .zero && duration <= Self.longest, "duration must be from 0 to a year")
        try require(drain >= .zero && drain <= Self.longest, "drain must be from 0 to a year")
        try require(concurrentHandshakes >= 1, "concurrent handshakes must be at least 1")
        try require(connectAttempts >= 1, "connect attempts must be at least 1")
        try require(handshakeTimeout > .zero && handshakeTimeout <= Self.longest, "the handshake timeout must be positive, at most a year")
        try require(readInterval >= .zero && readInterval <= .seconds(1), "the read interval must be from 0 to 1 s")
        try require(eventLoopThreads >= 1, "event loop threads must be at least 1")
        try require(engine.isAvailable, "the \(engine.rawValue) engine needs Linux (epoll)")
        try require(progressInterval > .zero, "the progress interval must be positive")
        try require(maxMessageBytes >= 1024, "the largest message must be at least 1024 bytes")
        _ = try SubscriberTarget(url: url)
    }
}

/// What carries a load run's connections.
public enum LoadEngine: String, Sendable, CaseIterable {
    /// Raw non-blocking sockets, one epoll set per thread, the WebSocket handshake and frames read by this library:
    /// the least CPU per message (Linux only).
    case sockets
    /// SwiftNIO's event loops and HTTP client upgrade, then the same frame reading: portable.
    case nio

    /// The engine a configuration starts with on this platform.
    public static var platformDefault: LoadEngine {
        #if os(Linux)
        .sockets
        #else
        .nio
        #endif
    }

    /// Whether it runs on this platform.
    public var isAvailable: Bool {
        #if os(Linux)
        true
        #else
        self == .nio
        #endif
    }
}

/// Why a load run could not start.
public enum LoadError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A setting is out of range.
    case invalidConfiguration(String)
    /// The URL is not a `ws://` URL this client can use.
    case invalidURL(String)
    /// The host name did not resolve.
    case cannotResolve(host: String, reason: String)
    /// The system refused what the engine needs (threads, epoll, eventfd), with the call and its error.
    case cannotStart(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let message): "invalid configuration: \(message)"
        case .invalidURL(let message): "invalid URL: \(message)"
        case .cannotResolve(let host, let reason): "cannot resolve \(host): \(reason)"
        case .cannotStart(let reason): "cannot start the load engine: \(reason)"
        }
    }
}

/// Where to connect and what to ask for: the parsed `ws://` URL.
struct SubscriberTarget: Sendable, Equatable {
    var host: String
    var port: Int
    /// The path with the URL's own query, if any (`/`, `/ws?x=1`).
    var pathAndQuery: String

    init(url: String) throws {
        guard let schemeEnd = url.firstRange(of: "://") else { throw LoadError.invalidURL("\(url) has no scheme; use ws://HOST:PORT/") }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "ws" else {
            throw LoadError.invalidURL(
                scheme == "wss"
                    ? "wss is not supported (this client has no TLS); connect to the bridge's plain port, e.g. through kubectl port-forward"
                    : "the scheme must be ws, not \(scheme)")
        }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var path = String(rest[authorityEnd...])
        if let fragment = path.firstIndex(of: "#") { path = String(path[..<fragment]) }
        if path.isEmpty || path.first == "?" { path = "/" + path }
        guard !authority.contains("@") else { throw LoadError.invalidURL("credentials in the URL are not supported; use --token") }

        let hostPart: Substring
        let portPart: Substring?
        if authority.hasPrefix("[") {  // [IPv6]:port
            guard let close = authority.firstIndex(of: "]") else { throw LoadError.invalidURL("unterminated [ in \(url)") }
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            guard after.isEmpty || after.hasPrefix(":") else { throw LoadError.invalidURL("unexpected \(after) after the host") }
            portPart = after.isEmpty ? nil : after.dropFirst()
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            portPart = authority[authority.index(after: colon)...]
        } else {
            hostPart = authority
            portPart = nil
        }
        guard !hostPart.isEmpty else { throw LoadError.invalidURL("\(url) has no host") }
        host = String(hostPart)
        if let portPart {
            guard let port = Int(portPart), (1...65_535).contains(port) else { throw LoadError.invalidURL("bad port \(portPart)") }
            self.port = port
        } else {
            port = 80
        }
        pathAndQuery = path
    }

    /// The `Host` header's value.
    var hostHeader: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return port == 80 ? host : "\(host):\(port)"
    }

    /// The request target of one subscription: the path, the URL's own query and the subscription's parameters.
    func requestURI(jobId: String, connectionId: String, token: String?) -> String {
        var parameters = [("job_id", jobId), ("connection_id", connectionId)]
        if let token { parameters.append(("token", token)) }
        let query = parameters.map { "\($0.0)=\(Self.percentEncoded($0.1))" }.joined(separator: "&")
        if pathAndQuery.contains("?") {
            return pathAndQuery.hasSuffix("?") || pathAndQuery.hasSuffix("&") ? pathAndQuery + query : pathAndQuery + "&" + query
        }
        return pathAndQuery + "?" + query
    }

    /// Percent-encodes everything but RFC 3986's unreserved characters.
    static func percentEncoded(_ value: String) -> String {
        var out = ""
        out.reserveCapacity(value.utf8.count)
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]], as: UTF8.self)
            }
        }
        return out
    }
}

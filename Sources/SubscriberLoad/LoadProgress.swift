/// A progress report of a running load, delivered about once per `progressInterval` and at every phase change.
///
/// **Ready signal**: the first progress whose `phase` is ``Phase/measuring`` comes once every connection has been
/// made (or has failed for good) and every connected subscriber has received its `job.snapshot`, just after the
/// measurement window opened. A benchmark harness starts producing events then.
public struct LoadProgress: Sendable, Equatable {
    /// Where a run is.
    public enum Phase: String, Sendable, Codable, Equatable {
        /// Opening connections; each is done when its snapshot came.
        case connecting
        /// The measurement window: latency and throughput count.
        case measuring
        /// After the window: connections keep reading, for the delivery audit only.
        case draining
        /// Closing the connections.
        case closing
        /// Done; the report follows.
        case finished
    }

    /// The phase.
    public var phase: Phase
    /// Seconds since the run started.
    public var elapsedSeconds: Double
    /// Connections asked for.
    public var connectionsWanted: Int
    /// Connections made (upgraded, snapshot received).
    public var connected: Int
    /// Connections that failed every try.
    public var failed: Int
    /// Connected ones the bridge closed since.
    public var closedByBridge: Int
    /// Live messages per second over the last interval, all connections together.
    public var messagesPerSecond: Double
    /// Latency percentiles of the last interval, in milliseconds (`nil` without messages).
    public var p50: Int64?
    public var p99: Int64?

    /// Creates a progress report.
    public init(
        phase: Phase, elapsedSeconds: Double, connectionsWanted: Int, connected: Int, failed: Int, closedByBridge: Int, messagesPerSecond: Double,
        p50: Int64?, p99: Int64?
    ) {
        self.phase = phase
        self.elapsedSeconds = elapsedSeconds
        self.connectionsWanted = connectionsWanted
        self.connected = connected
        self.failed = failed
        self.closedByBridge = closedByBridge
        self.messagesPerSecond = messagesPerSecond
        self.p50 = p50
        self.p99 = p99
    }

    /// One line for a terminal: `measuring   12.0 s | 2000/2000 connected, 0 failed, 0 closed | 1,523 msg/s | p50 2 ms  p99 9 ms`.
    public var line: String {
        let phaseName = phase.rawValue.padding(to: 10)
        let latency = p50.map { "p50 \($0) ms  p99 \(p99 ?? $0) ms" } ?? "p50 -  p99 -"
        return "\(phaseName) \(Format.fixed(elapsedSeconds, 1).leftPadding(to: 6)) s | \(connected)/\(connectionsWanted) connected, "
            + "\(failed) failed, \(closedByBridge) closed | \(Format.grouped(Int(messagesPerSecond.rounded()))) msg/s | \(latency)"
    }
}

extension String {
    fileprivate func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }

    fileprivate func leftPadding(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

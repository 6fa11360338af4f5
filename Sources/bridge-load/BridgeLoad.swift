import ArgumentParser
import Foundation
import SubscriberLoad
import UnixSignals

/// `bridge-load`: holds many WebSocket subscribers on a bridge and measures delivery latency; see README.md here.
@main
struct BridgeLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bridge-load",
        abstract: "Hold many WebSocket subscribers on a progress bridge and measure delivery latency.",
        discussion: """
            Opens --connections WebSockets (spread round-robin over the --job-id jobs), waits until each has its \
            job.snapshot, then measures for --duration seconds: latency = receive time - the event's occurred_at. \
            Prints a progress line to stderr every second and a Markdown summary (or --json) to stdout. \
            Ctrl-C stops early and still prints the summary. The bridge's per-address limits \
            (--max-connections-per-ip, --max-http-connections-per-ip, 100 and 256 by default) must allow the connections.
            """)

    @Option(help: "The bridge's WebSocket URL (ws:// only).")
    var url = "ws://127.0.0.1:8765/"

    @Option(name: .customLong("job-id"), help: "A job to subscribe to (repeatable; connections are spread round-robin).")
    var jobIds: [String] = []

    @Option(help: "Connections to open.")
    var connections = 100

    @Option(help: "Seconds of the measurement window, which opens once every connection has its snapshot.")
    var duration: Double = 30

    @Option(help: "A bearer token, sent as &token= (or set BRIDGE_LOAD_TOKEN, which keeps it out of the process list).")
    var token: String?

    @Option(help: "Handshakes (connect, upgrade, snapshot) in flight at once.")
    var concurrentHandshakes = 200

    @Option(help: "Tries per connection before it counts as failed.")
    var connectAttempts = 3

    @Option(help: "Seconds one try may take, from TCP connect to snapshot.")
    var handshakeTimeout: Double = 10

    @Option(help: "Seconds connections keep reading after the window, for the delivery audit.")
    var drain: Double = 2

    @Option(help: "What carries the connections: sockets (raw sockets and epoll, Linux; the default there) or nio (SwiftNIO).")
    var engine: String = LoadEngine.platformDefault.rawValue

    @Option(
        help: """
            Milliseconds between the sockets engine's rounds of reading (0: read as soon as anything arrives). Latencies \
            are late by up to this much, never early; it spares a bridge on the same machine a client wake-up per message.
            """)
    var readIntervalMs: Double = 1

    @Option(help: "Threads carrying the connections (default: one per core).")
    var threads: Int?

    @Flag(help: "Print the final report as one JSON object on stdout (instead of the table).")
    var json = false

    @Flag(help: "No progress line.")
    var quiet = false

    func validate() throws {
        guard !jobIds.isEmpty else { throw ValidationError("give at least one --job-id") }
        guard connections >= 1 else { throw ValidationError("--connections must be at least 1") }
        // (At most a year each: they become milliseconds, which must not overflow.)
        guard duration >= 0, duration <= 31_536_000 else { throw ValidationError("--duration must be a number of seconds from 0 to a year") }
        guard drain >= 0, drain <= 31_536_000 else { throw ValidationError("--drain must be a number of seconds from 0 to a year") }
        guard handshakeTimeout > 0, handshakeTimeout <= 31_536_000 else {
            throw ValidationError("--handshake-timeout must be a positive number of seconds, at most a year")
        }
        guard readIntervalMs >= 0, readIntervalMs <= 1000 else { throw ValidationError("--read-interval-ms must be from 0 to 1000") }
        guard LoadEngine(rawValue: engine) != nil else {
            throw ValidationError("--engine must be one of \(LoadEngine.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        var configuration = LoadConfiguration(jobIds: jobIds)
        configuration.url = url
        configuration.connections = connections
        configuration.duration = .milliseconds(Int64(duration * 1000))
        configuration.drain = .milliseconds(Int64(drain * 1000))
        configuration.token = token ?? ProcessInfo.processInfo.environment["BRIDGE_LOAD_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.concurrentHandshakes = concurrentHandshakes
        configuration.connectAttempts = connectAttempts
        configuration.handshakeTimeout = .milliseconds(Int64(handshakeTimeout * 1000))
        configuration.readInterval = .microseconds(Int64(readIntervalMs * 1000))
        if let threads { configuration.eventLoopThreads = threads }
        if let engine = LoadEngine(rawValue: engine) { configuration.engine = engine }
        do {
            try configuration.validate()
        } catch {
            throw ValidationError("\(error)")
        }

        let progressLine = quiet ? nil : ProgressLine()
        var progress: (@Sendable (LoadProgress) -> Void)?
        if let progressLine { progress = { progressLine.show($0) } }
        let report = try await Self.runStoppingOnSignal(configuration, progress: progress)
        progressLine?.finish()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.markdownTable)
        }
        if report.connectionsConnected == 0 { throw ExitCode.failure }
    }

    /// Runs the load; SIGINT or SIGTERM stops it early, and the report of what was measured still comes back.
    private static func runStoppingOnSignal(
        _ configuration: LoadConfiguration, progress: (@Sendable (LoadProgress) -> Void)?
    ) async throws -> LoadReport {
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        return try await withThrowingTaskGroup(of: LoadReport?.self) { group in
            group.addTask { try await runLoad(configuration, progress: progress) }
            group.addTask {
                for await _ in signals { return nil }
                return nil
            }
            while let result = try await group.next() {
                if let report = result {
                    group.cancelAll()  // the signal watcher
                    return report
                }
                group.cancelAll()  // a signal: stop the load; it still returns its report
            }
            throw CancellationError()
        }
    }
}

/// The live progress line on stderr: overwritten in place on a terminal, one line per report otherwise (logs).
final class ProgressLine: Sendable {
    private let isTerminal = isatty(STDERR_FILENO) == 1

    func show(_ progress: LoadProgress) {
        let text = progress.line
        if isTerminal {
            // \u{1B}[K clears what a longer previous line left.
            FileHandle.standardError.write(Data(("\r" + text + "\u{1B}[K").utf8))
        } else {
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
    }

    /// Ends the overwritten line so that what follows starts on a fresh one.
    func finish() {
        if isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

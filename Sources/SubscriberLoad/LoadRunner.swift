import NIOCore
import NIOPosix
import Synchronization

/// Runs a subscriber load against a bridge and returns what it measured.
///
/// 1. Raises the open-file limit to the hard limit and starts the engine's `eventLoopThreads` threads.
/// 2. **Connecting**: opens `connections` WebSockets, at most `concurrentHandshakes` at a time, each done when its
///    `job.snapshot` came; a failed try is retried (up to `connectAttempts`, with backoff) unless retrying cannot help.
/// 3. **Measuring** for `duration`: latency (receive time − `occurred_at`) and throughput count. The first progress
///    in this phase is the signal to start producing (see ``LoadProgress``).
/// 4. **Draining** for `drain`: connections keep reading, for the delivery audit.
/// 5. **Closing**: every connection is closed with 1000.
///
/// Cancelling the calling task stops the run early (no more connects; the window ends; no drain) and still returns
/// the report of what was measured, with `stoppedEarly` set.
///
/// - Parameters:
///   - configuration: what to run.
///   - progress: called about once per `progressInterval` and at every phase change, from a background task; keep it
///     short.
/// - Throws: ``LoadError`` if the configuration is invalid or the host does not resolve.
public func runLoad(_ configuration: LoadConfiguration, progress: (@Sendable (LoadProgress) -> Void)? = nil) async throws -> LoadReport {
    try configuration.validate()
    let target = try SubscriberTarget(url: configuration.url)
    let address: SocketAddress
    do {
        address = try SocketAddress.makeAddressResolvingHost(target.host, port: target.port)
    } catch {
        throw LoadError.cannotResolve(host: target.host, reason: "\(error)")
    }
    let openFileLimit = OpenFileLimit.raiseToHardLimit()
    let engine: any SubscriberEngine =
        switch configuration.engine {
        case .nio: try await NIOSubscriberEngine.start(configuration: configuration, target: target, address: address)
        case .sockets: try SocketSubscriberEngine.start(configuration: configuration, target: target, address: address)
        }
    let run = LoadRun(configuration: configuration, engine: engine, openFileLimit: openFileLimit, progress: progress)
    let report = await run.run()
    await engine.shutdown()
    return report
}

/// One run: its phases, in order, over the loops' recorders.
private struct LoadRun: Sendable {
    let configuration: LoadConfiguration
    let engine: any SubscriberEngine
    let openFileLimit: UInt64
    let tally = ConnectTally()
    let reporter: ProgressReporter

    init(configuration: LoadConfiguration, engine: any SubscriberEngine, openFileLimit: UInt64, progress: (@Sendable (LoadProgress) -> Void)?) {
        self.configuration = configuration
        self.engine = engine
        self.openFileLimit = openFileLimit
        reporter = ProgressReporter(callback: progress, engine: engine, tally: tally, wanted: configuration.connections)
    }

    func run() async -> LoadReport {
        await withTaskGroup(of: Void.self, returning: LoadReport.self) { tasks in
            let reporter = self.reporter
            let interval = configuration.progressInterval
            tasks.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    if Task.isCancelled { break }
                    await reporter.emit()
                }
            }
            let report = await phases()
            tasks.cancelAll()
            return report
        }
    }

    private func phases() async -> LoadReport {
        await reporter.enter(.connecting)
        let connectStart = ContinuousClock.now
        await connectAll()
        let connectSeconds = (ContinuousClock.now - connectStart).seconds

        var stoppedEarly = Task.isCancelled
        var measuredSeconds = 0.0
        var endSeqs = Array(repeating: Int64(0), count: configuration.jobIds.count)
        if !stoppedEarly {
            _ = await engine.onEveryRecorder { $0.openWindow() }
            let windowStart = ContinuousClock.now
            await reporter.enter(.measuring)
            try? await Task.sleep(until: windowStart + configuration.duration)
            stoppedEarly = Task.isCancelled
            for loopEnds in await engine.onEveryRecorder({ $0.closeWindow() }) {
                for (job, seq) in loopEnds.enumerated() { endSeqs[job] = max(endSeqs[job], seq) }
            }
            measuredSeconds = (ContinuousClock.now - windowStart).seconds
            if !stoppedEarly {
                await reporter.enter(.draining)
                try? await Task.sleep(for: configuration.drain)
            }
        }
        let summaries = await engine.onEveryRecorder { $0.summary() }
        await reporter.enter(.closing)
        await engine.closeAll()
        let report = ReportBuilder(
            configuration: configuration, tally: tally.snapshot(), summaries: summaries, endSeqs: endSeqs, connectSeconds: connectSeconds,
            measuredSeconds: measuredSeconds, openFileLimit: openFileLimit, stoppedEarly: stoppedEarly || Task.isCancelled
        ).report
        await reporter.enter(.finished)
        return report
    }

    /// Opens every connection, `concurrentHandshakes` at a time.
    private func connectAll() async {
        let total = configuration.connections
        let limit = configuration.concurrentHandshakes
        await withTaskGroup(of: Void.self) { group in
            var next = 0
            var inFlight = 0
            while true {
                while inFlight < limit, next < total, !Task.isCancelled {
                    let index = next
                    group.addTask { await connect(index) }
                    next += 1
                    inFlight += 1
                }
                guard await group.next() != nil else { break }
                inFlight -= 1
            }
            if next < total { tally.failed(reason: "not tried (stopped)", count: total - next) }
        }
    }

    /// Opens connection `index`, with retries.
    private func connect(_ index: Int) async {
        let job = index % configuration.jobIds.count
        var attempt = 1
        while true {
            do {
                try await engine.subscribe(index: index, job: job, jobId: configuration.jobIds[job], connectionId: "\(configuration.connectionIdPrefix)-\(index)")
                tally.connected()
                return
            } catch {
                guard attempt < configuration.connectAttempts, error.isRetryable, !Task.isCancelled else {
                    tally.failed(reason: error.reason)
                    return
                }
                tally.retried()
                // Exponential backoff with jitter, so that a refused burst does not come back as one burst.
                let base = 250 << min(attempt - 1, 5)
                try? await Task.sleep(for: .milliseconds(Int.random(in: base / 2...base)))
                attempt += 1
            }
        }
    }
}

/// Outcomes of the connects, shared by the connecting tasks and the progress reporter.
final class ConnectTally: Sendable {
    struct Snapshot: Sendable {
        var connected = 0
        var failed = 0
        var retries = 0
        var failures: [String: Int] = [:]
    }

    private let state = Mutex(Snapshot())

    func connected() { state.withLock { $0.connected += 1 } }
    func retried() { state.withLock { $0.retries += 1 } }
    func failed(reason: String, count: Int = 1) {
        state.withLock {
            $0.failed += count
            $0.failures[reason, default: 0] += count
        }
    }
    func snapshot() -> Snapshot { state.withLock { $0 } }
}

/// Puts the progress together from the loops' last intervals and the connect tally, and hands it to the callback.
private actor ProgressReporter {
    let callback: (@Sendable (LoadProgress) -> Void)?
    let engine: any SubscriberEngine
    let tally: ConnectTally
    let wanted: Int
    let start = ContinuousClock.now
    private var phase = LoadProgress.Phase.connecting
    private var lastSample = ContinuousClock.now

    init(callback: (@Sendable (LoadProgress) -> Void)?, engine: any SubscriberEngine, tally: ConnectTally, wanted: Int) {
        self.callback = callback
        self.engine = engine
        self.tally = tally
        self.wanted = wanted
    }

    /// Enters a phase and reports at once.
    func enter(_ phase: LoadProgress.Phase) async {
        self.phase = phase
        await emit()
    }

    /// Reports the interval since the last report.
    func emit() async {
        guard let callback else { return }
        let phase = self.phase
        var histogram = LatencyHistogram()
        var messages = 0
        var closed = 0
        for sample in await engine.onEveryRecorder({ $0.takeInterval() }) {
            histogram.merge(sample.histogram)
            messages += sample.messages
            closed += sample.closed
        }
        let now = ContinuousClock.now
        let seconds = max((now - lastSample).seconds, 0.001)
        lastSample = now
        let connects = tally.snapshot()
        callback(
            LoadProgress(
                phase: phase, elapsedSeconds: (now - start).seconds, connectionsWanted: wanted, connected: connects.connected, failed: connects.failed,
                closedByBridge: closed, messagesPerSecond: Double(messages) / seconds, p50: histogram.percentile(50), p99: histogram.percentile(99)))
    }
}

extension Duration {
    /// The duration in seconds.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

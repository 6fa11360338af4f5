/// Everything the subscribers of one event loop (or poller thread) measure. It lives on that thread and only its
/// connections and work submitted to it touch it, so recording a message takes no lock and no atomic.
final class LoopRecorder {
    /// One connection that completed its upgrade.
    struct Connection {
        var job: Int
        var sequence = SubscriberSequence()
        /// Whether its snapshot came (before that it counts as a handshake, not as a subscriber).
        var ready = false
        /// The close code of a close the run did not start (1006 when the connection ended without a close frame).
        var closedBy: UInt16?
    }

    /// Every job's never-conflated `seq`s as this loop's connections received them, for the delivery audit.
    struct JobLedger {
        var neverConflatedSeqs = Set<Int64>()
        var terminalSeqs = Set<Int64>()
        /// The largest live `seq` taken by any connection.
        var maxSeq: Int64 = 0
    }

    private(set) var connections: [Connection] = []
    private var jobs: [JobLedger]
    /// Whether the measurement window is open: only then do messages count for latency and throughput.
    private var measuring = false
    /// Set once the run starts closing connections: closes from then on are its own, not the bridge's.
    private(set) var closing = false

    private var window = LatencyHistogram()
    private var windowMessages = 0
    private var interval = LatencyHistogram()
    private var intervalMessages = 0
    private var negativeLatencies = 0
    private var liveWithoutTimestamp = 0
    private var liveWithoutSeq = 0
    private var closes: [UInt16: Int] = [:]
    private var closedCount = 0

    init(jobCount: Int) {
        jobs = Array(repeating: JobLedger(), count: jobCount)
    }

    /// Adds a connection that just upgraded; returns its index.
    func register(job: Int) -> Int {
        connections.append(Connection(job: job))
        return connections.count - 1
    }

    /// Records one received message; returns whether it was the connection's first snapshot (it is ready).
    func record(_ message: ScannedMessage, connection index: Int, receivedAt now: Int64) -> Bool {
        let observation = connections[index].sequence.observe(message.kind, seq: message.seq)
        guard message.kind.isLive else { return observation == .firstSnapshot }
        if let timestamp = message.timestamp {
            let latency = now - timestamp
            if latency < 0 { negativeLatencies += 1 }
            interval.record(latency)
            if measuring { window.record(latency) }
        } else {
            liveWithoutTimestamp += 1
        }
        intervalMessages += 1
        if measuring { windowMessages += 1 }
        guard let seq = message.seq else {
            liveWithoutSeq += 1
            return false
        }
        if observation == .taken {
            let job = connections[index].job
            if seq > jobs[job].maxSeq { jobs[job].maxSeq = seq }
            if message.kind.isNeverConflated { jobs[job].neverConflatedSeqs.insert(seq) }
            if message.kind == .terminal { jobs[job].terminalSeqs.insert(seq) }
        }
        return false
    }

    /// Notes that a connection's channel closed; `code` is the close frame's code, `nil` if none came.
    func closed(connection index: Int, code: UInt16?) {
        guard connections[index].ready, !closing else { return }
        let code = code ?? 1006  // "abnormal closure": the connection ended without a close frame
        connections[index].closedBy = code
        closes[code, default: 0] += 1
        closedCount += 1
    }

    /// Marks a connection ready (its snapshot came).
    func markReady(connection index: Int) {
        connections[index].ready = true
    }

    /// Opens the measurement window.
    func openWindow() {
        window.reset()
        windowMessages = 0
        measuring = true
    }

    /// Closes the measurement window; returns each job's largest `seq` seen so far (the audit's end).
    func closeWindow() -> [Int64] {
        measuring = false
        return jobs.map(\.maxSeq)
    }

    /// What the last interval saw, and starts the next.
    func takeInterval() -> IntervalSample {
        defer {
            interval.reset()
            intervalMessages = 0
        }
        return IntervalSample(histogram: interval, messages: intervalMessages, closed: closedCount)
    }

    /// Everything measured, once the window and the drain are over.
    func summary() -> LoopSummary {
        LoopSummary(
            histogram: window, messages: windowMessages, negativeLatencies: negativeLatencies, liveWithoutTimestamp: liveWithoutTimestamp,
            liveWithoutSeq: liveWithoutSeq, closes: closes,
            connections: connections.filter(\.ready).map {
                ConnectionSummary(job: $0.job, sequence: $0.sequence, closedBy: $0.closedBy)
            },
            jobs: jobs.map { (neverConflatedSeqs: Array($0.neverConflatedSeqs), terminalSeqs: Array($0.terminalSeqs)) })
    }

    /// Notes that the run starts closing its connections: closes from now on are not the bridge's doing.
    func beginClosing() {
        closing = true
    }
}

/// One interval of one loop, for the progress line.
struct IntervalSample: Sendable {
    var histogram: LatencyHistogram
    var messages: Int
    /// Connections the bridge closed so far (cumulative).
    var closed: Int
}

/// A ready connection at the end of a run.
struct ConnectionSummary: Sendable {
    var job: Int
    var sequence: SubscriberSequence
    var closedBy: UInt16?
}

/// Everything one loop measured.
struct LoopSummary: Sendable {
    var histogram: LatencyHistogram
    var messages: Int
    var negativeLatencies: Int
    var liveWithoutTimestamp: Int
    var liveWithoutSeq: Int
    var closes: [UInt16: Int]
    var connections: [ConnectionSummary]
    var jobs: [(neverConflatedSeqs: [Int64], terminalSeqs: [Int64])]
}

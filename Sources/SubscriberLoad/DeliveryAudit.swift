/// Finds never-conflated messages that an open connection did not get, by comparing it with every other
/// connection of its job.
///
/// The bridge conflates only `job.progress`; every other message of a job reaches every open subscriber, in `seq`
/// order (a subscriber that falls too far behind is closed with 4001 instead). So the never-conflated `seq`s any
/// connection of a job received, between a connection's snapshot and the end of the run, are what that connection
/// must have received too. The end is the job's largest `seq` seen when the measurement window closed
/// (`endSeq`), or the connection's own last one if that is larger: connections keep reading for a drain period
/// after the window, so a lagging but lossless one catches up. A message lost on every connection at once cannot
/// be seen this way.
struct DeliveryAudit: Sendable, Equatable {
    /// One connection, as the audit needs it.
    struct Connection: Sendable, Equatable {
        var job: Int
        var snapshotSeq: Int64
        var lastSeq: Int64
        var neverConflated: Int
        var terminal: Int
        /// Still open when the run ended (connections the bridge closed are reported by close code instead).
        var open: Bool
    }

    /// What every connection of a job received, together.
    struct Job: Sendable, Equatable {
        /// The never-conflated `seq`s any connection received (terminal ones included), sorted, without duplicates.
        var neverConflatedSeqs: [Int64]
        /// The terminal `seq`s any connection received, sorted, without duplicates.
        var terminalSeqs: [Int64]
        /// The largest `seq` any connection had when the measurement window closed.
        var endSeq: Int64
    }

    /// Open connections audited.
    private(set) var connections = 0
    /// Never-conflated messages they received.
    private(set) var neverConflatedReceived = 0
    /// Never-conflated messages they should have received and did not.
    private(set) var neverConflatedMissing = 0
    /// Terminal events they received.
    private(set) var terminalReceived = 0
    /// Terminal events they should have received and did not.
    private(set) var terminalMissing = 0
    /// Connections missing at least one never-conflated message.
    private(set) var connectionsWithLosses = 0

    /// Audits `connections` against what their jobs' connections received together.
    init(connections: [Connection], jobs: [Job]) {
        for connection in connections where connection.open && jobs.indices.contains(connection.job) {
            let job = jobs[connection.job]
            let end = max(connection.lastSeq, job.endSeq)
            let expected = Self.count(of: job.neverConflatedSeqs, after: connection.snapshotSeq, upTo: end)
            let expectedTerminal = Self.count(of: job.terminalSeqs, after: connection.snapshotSeq, upTo: end)
            let missing = max(0, expected - connection.neverConflated)
            self.connections += 1
            neverConflatedReceived += connection.neverConflated
            terminalReceived += connection.terminal
            neverConflatedMissing += missing
            terminalMissing += max(0, expectedTerminal - connection.terminal)
            if missing > 0 { connectionsWithLosses += 1 }
        }
    }

    /// How many of the sorted `seqs` lie in `(lower, upper]`.
    static func count(of seqs: [Int64], after lower: Int64, upTo upper: Int64) -> Int {
        guard upper > lower else { return 0 }
        return firstIndex(in: seqs, greaterThan: upper) - firstIndex(in: seqs, greaterThan: lower)
    }

    /// The index of the first element of the sorted `seqs` greater than `value` (binary search).
    private static func firstIndex(in seqs: [Int64], greaterThan value: Int64) -> Int {
        var low = 0
        var high = seqs.count
        while low < high {
            let middle = (low + high) / 2
            if seqs[middle] <= value { low = middle + 1 } else { high = middle }
        }
        return low
    }
}

import ProgressContract

/// Processing-time statistics over completed videos, in milliseconds.
public struct ProcessingTimes: Sendable, Hashable {
    public let mean: Double
    public let p50: Int64
    public let p95: Int64
    public let samples: Int
}

/// The per-job metrics subscribers see (contract §2). Computed from a `JobAggregate`.
public struct JobProgress: Sendable, Hashable {
    public let jobId: String
    public let state: JobState?
    public let title: String?
    public let totalVideos: Int?
    public let pending: Int
    public let processing: Int
    public let completed: Int
    public let failed: Int
    public let skipped: Int
    public let canceled: Int
    /// Videos in a terminal state / total × 100 (0 when the total is unknown).
    public let percentComplete: Double
    /// completed / (completed + failed); `nil` before either happened.
    public let successRate: Double?
    /// Terminal videos per minute over the recent window of event time; `nil` when unknown.
    public let throughputPerMinute: Double?
    public let processingTime: ProcessingTimes?
    public let etaSeconds: Double?
    public let elapsedMs: Int64
    public let processingDeadlineMs: Int64?
    public let deadlineAtRisk: Bool
    public let priority: String?
    public let sheetId: String?
    public let sheetRange: String?
    public let createdAt: Int64?
    public let startedAt: Int64?
    public let finishedAt: Int64?
    public let updatedAt: Int64
    public let error: ErrorInfo?
    public let eventsApplied: Int
    /// Whether the counts come from the monitor's `job.progress` (no video events seen).
    public let countsFromMonitor: Bool
}

extension JobProgress {
    /// The UTF-8 bytes of every string it holds: what a copy of it holds beyond its fixed size. (Every `String` field
    /// counts; a test compares this with all the strings reflection finds, so a field added later cannot be missed.)
    public var stringBytes: Int {
        func count(_ text: String?) -> Int { text?.utf8.count ?? 0 }
        return count(jobId) + count(title) + count(priority) + count(sheetId) + count(sheetRange) + count(error?.code) + count(error?.message)
    }
}

/// How derived metrics are computed.
public struct ProgressPolicy: Sendable {
    /// The window of event time over which throughput is measured. Default 5 minutes.
    public var throughputWindowMs: Int64

    public init(throughputWindowMs: Int64 = 5 * 60_000) {
        self.throughputWindowMs = throughputWindowMs
    }
}

extension JobAggregate {
    /// The job's `JobProgress`: a pure function of the events applied so far.
    public func progress(policy: ProgressPolicy = .init()) -> JobProgress {
        let details = self.details
        let finishedAt = self.finishedAt
        let useMonitor = videos.isEmpty && monitorCounts != nil
        var completed = count(.completed)
        var failed = count(.failed)
        var skipped = count(.skipped)
        var processing = count(.processing)
        let canceled = count(.canceled)
        if useMonitor, let m = monitorCounts {
            completed = m.completed
            failed = m.failed
            skipped = m.skipped ?? 0
            processing = m.processing ?? 0
        }
        let total = details.totalVideos
        // Counts may come from the monitor's own numbers: every sum and difference saturates.
        let terminal = completed.adding(saturating: failed).adding(saturating: skipped).adding(saturating: canceled)
        let knownPending = useMonitor ? 0 : count(.pending)
        let pending = total.map { max(0, $0.subtracting(saturating: terminal).subtracting(saturating: processing)) } ?? knownPending

        let percent: Double
        if let total, total > 0 {
            percent = min(100, Double(terminal) / Double(total) * 100)
        } else {
            percent = 0
        }
        let outcomes = Double(completed) + Double(failed)
        let successRate = outcomes > 0 ? Double(completed) / outcomes : nil

        // Throughput over the window of event time ending at the latest event.
        let start = startedAt ?? details.createdAt ?? firstEventAt
        let end = finishedAt ?? lastEventAt
        let windowStart = max(start, end.subtracting(saturating: policy.throughputWindowMs))
        let windowMs = end.subtracting(saturating: windowStart)
        var throughput: Double?
        if !useMonitor, windowMs > 0 {
            // Videos finished (terminal) with their latest change in (windowStart, end].
            let recent = tally.finishedAt.count(atMost: end) - tally.finishedAt.count(atMost: windowStart)
            throughput = Double(recent) / (Double(windowMs) / 60_000)
        }

        let samples = tally.processingTimes
        let times: ProcessingTimes? =
            samples.isEmpty
            ? nil
            : ProcessingTimes(
                mean: Double(tally.processingTimesSum) / Double(samples.count),
                p50: samples.element(at: Self.percentileIndex(0.50, of: samples.count)),
                p95: samples.element(at: Self.percentileIndex(0.95, of: samples.count)), samples: samples.count)

        var eta: Double?
        if let state, state.isTerminal {
            eta = state == .completed ? 0 : nil
        } else if let total {
            let remaining = max(0, total.subtracting(saturating: terminal))
            if remaining == 0 {
                eta = 0
            } else if let throughput, throughput > 0 {
                eta = Double(remaining) / throughput * 60
            }
        }
        let elapsed = max(0, end.subtracting(saturating: start))
        var atRisk = false
        if let deadline = details.processingDeadlineMs, !(state?.isTerminal ?? false) {
            if let eta {
                atRisk = Double(elapsed) + eta * 1000 > Double(deadline)
            } else {
                atRisk = elapsed > deadline
            }
        }
        return JobProgress(
            jobId: jobId, state: state, title: details.title, totalVideos: total,
            pending: pending, processing: processing, completed: completed, failed: failed, skipped: skipped, canceled: canceled,
            percentComplete: (percent * 100).rounded() / 100, successRate: successRate.map { ($0 * 10_000).rounded() / 10_000 },
            throughputPerMinute: throughput.map { ($0 * 100).rounded() / 100 }, processingTime: times,
            etaSeconds: eta.map { $0.rounded() }, elapsedMs: elapsed, processingDeadlineMs: details.processingDeadlineMs,
            deadlineAtRisk: atRisk, priority: details.priority, sheetId: details.sheetId, sheetRange: details.sheetRange,
            createdAt: details.createdAt, startedAt: startedAt, finishedAt: finishedAt, updatedAt: lastEventAt, error: error,
            eventsApplied: eventsApplied, countsFromMonitor: useMonitor)
    }

    /// Where the nearest-rank percentile `p` is among `count` sorted samples (count > 0).
    static func percentileIndex(_ p: Double, of count: Int) -> Int {
        let rank = Int((p * Double(count)).rounded(.up))
        return max(0, min(count - 1, rank - 1))
    }
}

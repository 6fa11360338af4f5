/// Delivery latency (receive time − the event's `occurred_at`) over the measurement window, in milliseconds.
public struct LatencySummary: Sendable, Codable, Equatable {
    /// Messages measured.
    public var samples: Int
    public var min: Int64
    public var p50: Int64
    public var p90: Int64
    public var p99: Int64
    public var p999: Int64
    public var max: Int64
    public var mean: Double

    /// The summary of a histogram; `nil` if it is empty.
    public init?(_ histogram: LatencyHistogram) {
        guard let p50 = histogram.percentile(50), let p90 = histogram.percentile(90), let p99 = histogram.percentile(99),
            let p999 = histogram.percentile(99.9), let mean = histogram.mean
        else { return nil }
        samples = Int(histogram.count)
        min = histogram.min
        max = histogram.max
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.p999 = p999
        self.mean = mean
    }
}

/// What a load run measured. Encoded (`--json`) with the snake_case keys of its `CodingKeys`.
public struct LoadReport: Sendable, Codable, Equatable {
    /// The bridge's URL.
    public var url: String
    /// The jobs watched.
    public var jobIds: [String]
    /// Connections asked for.
    public var connectionsWanted: Int
    /// Connections that upgraded and received their snapshot.
    public var connectionsConnected: Int
    /// Connections that failed every try (or were not tried because the run was stopped).
    public var connectionsFailed: Int
    /// Why the failed ones failed, by reason of their last try ("HTTP 403", "closed 1013 before snapshot", …).
    public var connectFailures: [String: Int]
    /// Tries beyond the first, over all connections.
    public var connectRetries: Int
    /// Seconds from the first connect to the last snapshot (or failure).
    public var connectSeconds: Double
    /// Seconds of the measurement window.
    public var measuredSeconds: Double
    /// Live messages (the job's events) received in the window.
    public var messages: Int
    /// `messages` per second of the window, over all connections.
    public var deliveriesPerSecond: Double
    /// Latency over the window; `nil` (and absent from the JSON) if nothing was received.
    public var latency: LatencySummary?
    /// Messages received "before" their `occurred_at` (clocks of producer and this host disagree); counted as 0 ms.
    public var negativeLatencies: Int
    /// Live messages without a readable `ts` / `occurred_at` or `seq` (none expected).
    public var unreadableMessages: Int
    /// Live messages whose `seq` skipped ahead, and the `seq`s skipped. Not losses by themselves: a `seq` is an input
    /// offset + 1, so other jobs' records in the partition, conflated `job.progress`, duplicates and dead letters
    /// all leave gaps.
    public var seqGaps: Int
    public var seqSkipped: Int64
    /// Live messages whose `seq` was not larger than the largest seen (duplicates, reordering; none expected).
    public var seqStale: Int
    /// Live messages before a connection's snapshot (none expected).
    public var messagesBeforeSnapshot: Int
    /// Connections audited for losses: ready and still open at the end.
    public var auditedConnections: Int
    /// Never-conflated messages (every event but `job.progress`) the audited connections received, and those they
    /// missed although another connection of their job received them (see the README of `bridge-load`).
    public var neverConflatedReceived: Int
    public var neverConflatedMissing: Int
    /// The same for terminal events (`job.completed`, `job.failed`, `job.canceled`) alone.
    public var terminalReceived: Int
    public var terminalMissing: Int
    /// Audited connections that missed at least one never-conflated message.
    public var connectionsWithLosses: Int
    /// Closes the bridge started, by close code ("1006": the connection ended without a close frame).
    public var closesByCode: [String: Int]
    /// The open-file limit in force (connections need one descriptor each).
    public var openFileLimit: UInt64
    /// Whether the run was stopped early (cancelled).
    public var stoppedEarly: Bool
    /// Warnings worth reading (a low open-file limit, …).
    public var notes: [String]

    enum CodingKeys: String, CodingKey {
        case url
        case jobIds = "job_ids"
        case connectionsWanted = "connections_wanted"
        case connectionsConnected = "connections_connected"
        case connectionsFailed = "connections_failed"
        case connectFailures = "connect_failures"
        case connectRetries = "connect_retries"
        case connectSeconds = "connect_seconds"
        case measuredSeconds = "measured_seconds"
        case messages
        case deliveriesPerSecond = "deliveries_per_second"
        case latency = "latency_ms"
        case negativeLatencies = "negative_latencies"
        case unreadableMessages = "unreadable_messages"
        case seqGaps = "seq_gaps"
        case seqSkipped = "seq_skipped"
        case seqStale = "seq_stale"
        case messagesBeforeSnapshot = "messages_before_snapshot"
        case auditedConnections = "audited_connections"
        case neverConflatedReceived = "never_conflated_received"
        case neverConflatedMissing = "never_conflated_missing"
        case terminalReceived = "terminal_received"
        case terminalMissing = "terminal_missing"
        case connectionsWithLosses = "connections_with_losses"
        case closesByCode = "closes_by_code"
        case openFileLimit = "open_file_limit"
        case stoppedEarly = "stopped_early"
        case notes
    }

    /// The report as a Markdown table (what `bridge-load` prints).
    public var markdownTable: String {
        var rows: [(String, String)] = [
            ("bridge", url),
            ("jobs", jobIds.joined(separator: ", ")),
            ("connections wanted / connected / failed", "\(connectionsWanted) / \(connectionsConnected) / \(connectionsFailed)"),
        ]
        if !connectFailures.isEmpty { rows.append(("connect failures", Self.tally(connectFailures))) }
        rows += [
            ("connect time (retries)", "\(Format.fixed(connectSeconds, 1)) s (\(connectRetries))"),
            ("measured", "\(Format.fixed(measuredSeconds, 1)) s" + (stoppedEarly ? " (stopped early)" : "")),
            ("messages", Format.grouped(messages)),
            ("deliveries/s", Format.grouped(Int(deliveriesPerSecond.rounded()))),
        ]
        if let latency {
            rows.append(("latency p50 / p90 / p99 / max", "\(latency.p50) / \(latency.p90) / \(latency.p99) / \(latency.max) ms"))
            rows.append(("latency p99.9 / mean", "\(latency.p999) / \(Format.fixed(latency.mean, 1)) ms"))
        } else {
            rows.append(("latency", "no messages in the window"))
        }
        if negativeLatencies > 0 { rows.append(("negative latencies (clock skew, counted as 0)", Format.grouped(negativeLatencies))) }
        if unreadableMessages > 0 { rows.append(("messages without seq or timestamp", Format.grouped(unreadableMessages))) }
        rows += [
            ("seq gaps (seqs skipped)", "\(Format.grouped(seqGaps)) (\(Format.grouped(Int(seqSkipped))))"),
            ("seq stale / before snapshot", "\(seqStale) / \(messagesBeforeSnapshot)"),
            (
                "never-conflated missing / received",
                "\(neverConflatedMissing) / \(Format.grouped(neverConflatedReceived)) on \(auditedConnections) connections"
                    + (connectionsWithLosses > 0 ? " (\(connectionsWithLosses) with losses)" : "")
            ),
            ("terminal events missing / received", "\(terminalMissing) / \(Format.grouped(terminalReceived))"),
            ("closes by code", closesByCode.isEmpty ? "none" : Self.tally(closesByCode)),
        ]
        var lines = ["| metric | value |", "| --- | --- |"]
        lines += rows.map { "| \($0.0) | \($0.1.replacingPipes()) |" }
        lines += notes.map { "\nNote: \($0)" }
        return lines.joined(separator: "\n")
    }

    /// `reason × count, …`, most frequent first.
    private static func tally(_ counts: [String: Int]) -> String {
        counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "\($0.key) × \($0.value)" }.joined(separator: ", ")
    }
}

extension String {
    /// Escapes `|` for a Markdown table cell.
    fileprivate func replacingPipes() -> String {
        split(separator: "|", omittingEmptySubsequences: false).joined(separator: "\\|")
    }
}

/// Number formatting without Foundation.
enum Format {
    /// `value` with `digits` decimals (rounded half away from zero).
    static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return "\(value)" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        let integer = Int(scaled / scale)
        let fraction = Int(scaled - Double(integer) * scale)
        let sign = value < 0 && scaled > 0 ? "-" : ""
        guard digits > 0 else { return "\(sign)\(integer)" }
        let fractionText = String(fraction)
        return "\(sign)\(integer)." + String(repeating: "0", count: max(0, digits - fractionText.count)) + fractionText
    }

    /// An integer with thin groups of three digits: `12,345`.
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (i, character) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(character)
        }
        return (value < 0 ? "-" : "") + out
    }
}

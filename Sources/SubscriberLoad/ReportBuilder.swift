/// Merges what the loops measured into the run's report: histograms, counters, the delivery audit.
struct ReportBuilder {
    let configuration: LoadConfiguration
    let tally: ConnectTally.Snapshot
    let summaries: [LoopSummary]
    /// Each job's largest `seq` when the window closed.
    let endSeqs: [Int64]
    let connectSeconds: Double
    let measuredSeconds: Double
    let openFileLimit: UInt64
    let stoppedEarly: Bool

    var report: LoadReport {
        var histogram = LatencyHistogram()
        var messages = 0
        var negativeLatencies = 0
        var unreadable = 0
        var closes: [String: Int] = [:]
        var gaps = 0
        var skipped: Int64 = 0
        var stale = 0
        var beforeSnapshot = 0
        var auditConnections: [DeliveryAudit.Connection] = []
        var neverConflated = Array(repeating: Set<Int64>(), count: configuration.jobIds.count)
        var terminal = neverConflated
        for summary in summaries {
            histogram.merge(summary.histogram)
            messages += summary.messages
            negativeLatencies += summary.negativeLatencies
            unreadable += summary.liveWithoutSeq + summary.liveWithoutTimestamp
            for (code, count) in summary.closes { closes[String(code), default: 0] += count }
            for connection in summary.connections {
                let sequence = connection.sequence
                gaps += sequence.gaps
                skipped += sequence.skippedSeqs
                stale += sequence.stale
                beforeSnapshot += sequence.beforeSnapshot
                guard let snapshotSeq = sequence.snapshotSeq else { continue }
                auditConnections.append(
                    DeliveryAudit.Connection(
                        job: connection.job, snapshotSeq: snapshotSeq, lastSeq: sequence.lastSeq, neverConflated: sequence.neverConflated,
                        terminal: sequence.terminal, open: connection.closedBy == nil))
            }
            for (job, ledger) in summary.jobs.enumerated() where job < neverConflated.count {
                neverConflated[job].formUnion(ledger.neverConflatedSeqs)
                terminal[job].formUnion(ledger.terminalSeqs)
            }
        }
        let jobs = neverConflated.indices.map { job in
            DeliveryAudit.Job(
                neverConflatedSeqs: neverConflated[job].sorted(), terminalSeqs: terminal[job].sorted(),
                endSeq: job < endSeqs.count ? endSeqs[job] : 0)
        }
        let audit = DeliveryAudit(connections: auditConnections, jobs: jobs)

        var notes: [String] = []
        if openFileLimit > 0, openFileLimit < UInt64(configuration.connections) + 64 {
            notes.append("the open-file limit is \(openFileLimit), too low for \(configuration.connections) connections; raise the hard limit (ulimit -Hn)")
        }
        if negativeLatencies > 0 {
            notes.append("\(negativeLatencies) messages arrived before their occurred_at: the producer's clock and this host's disagree")
        }
        if measuredSeconds > 0, messages == 0 {
            notes.append("no event arrived in the window: is anything producing for these jobs?")
        }
        return LoadReport(
            url: configuration.url, jobIds: configuration.jobIds, connectionsWanted: configuration.connections,
            connectionsConnected: tally.connected, connectionsFailed: tally.failed, connectFailures: tally.failures, connectRetries: tally.retries,
            connectSeconds: connectSeconds, measuredSeconds: measuredSeconds, messages: messages,
            deliveriesPerSecond: measuredSeconds > 0 ? Double(messages) / measuredSeconds : 0, latency: LatencySummary(histogram),
            negativeLatencies: negativeLatencies, unreadableMessages: unreadable, seqGaps: gaps, seqSkipped: skipped, seqStale: stale,
            messagesBeforeSnapshot: beforeSnapshot, auditedConnections: audit.connections, neverConflatedReceived: audit.neverConflatedReceived,
            neverConflatedMissing: audit.neverConflatedMissing, terminalReceived: audit.terminalReceived, terminalMissing: audit.terminalMissing,
            connectionsWithLosses: audit.connectionsWithLosses, closesByCode: closes, openFileLimit: openFileLimit, stoppedEarly: stoppedEarly,
            notes: notes)
    }
}

import Foundation
import Testing

@testable import SubscriberLoad

@Suite("SubscriberTarget")
struct SubscriberTargetTests {
    @Test("URLs", arguments: [
        ("ws://127.0.0.1:8765/", "127.0.0.1", 8765, "/"),
        ("ws://bridge", "bridge", 80, "/"),
        ("WS://bridge:9000/ws", "bridge", 9000, "/ws"),
        ("ws://[::1]:8765/ws?x=1#frag", "::1", 8765, "/ws?x=1"),
        ("ws://bridge:1?x=1", "bridge", 1, "/?x=1"),
    ])
    func parses(url: String, host: String, port: Int, path: String) throws {
        let target = try SubscriberTarget(url: url)
        #expect(target.host == host)
        #expect(target.port == port)
        #expect(target.pathAndQuery == path)
    }

    @Test("bad URLs", arguments: ["127.0.0.1:8765", "wss://bridge/", "http://bridge/", "ws://:80/", "ws://bridge:0/", "ws://bridge:x/", "ws://u:p@bridge/", "ws://[::1/"])
    func refuses(url: String) {
        #expect(throws: LoadError.self) { try SubscriberTarget(url: url) }
    }

    @Test("the request carries the subscription, percent-encoded")
    func requestURI() throws {
        let target = try SubscriberTarget(url: "ws://bridge:8765/ws")
        #expect(target.requestURI(jobId: "job_a-1", connectionId: "c 1/2", token: nil) == "/ws?job_id=job_a-1&connection_id=c%201%2F2")
        #expect(target.requestURI(jobId: "job_a", connectionId: "c", token: "a.b_c-d~") == "/ws?job_id=job_a&connection_id=c&token=a.b_c-d~")
        let withQuery = try SubscriberTarget(url: "ws://bridge/?region=eu")
        #expect(withQuery.requestURI(jobId: "job_a", connectionId: "c", token: "é") == "/?region=eu&job_id=job_a&connection_id=c&token=%C3%A9")
        #expect(target.hostHeader == "bridge:8765")
        #expect(try SubscriberTarget(url: "ws://[::1]:9/").hostHeader == "[::1]:9")
        #expect(try SubscriberTarget(url: "ws://bridge/").hostHeader == "bridge")
    }
}

@Suite("LoadConfiguration")
struct LoadConfigurationTests {
    @Test("defaults validate; bad settings are named")
    func validation() throws {
        try LoadConfiguration(jobIds: ["job_a"]).validate()
        #expect(throws: LoadError.invalidConfiguration("at least one job id is needed")) { try LoadConfiguration(jobIds: []).validate() }
        var configuration = LoadConfiguration(jobIds: ["job_a"])
        configuration.connections = 0
        #expect(throws: LoadError.self) { try configuration.validate() }
        configuration = LoadConfiguration(jobIds: ["job_a"])
        configuration.url = "wss://x/"
        #expect(throws: LoadError.self) { try configuration.validate() }
        for (interval, valid) in [(Duration.zero, true), (.milliseconds(1), true), (.seconds(1), true), (.nanoseconds(-1), false), (.milliseconds(1001), false)] {
            configuration = LoadConfiguration(jobIds: ["job_a"])
            configuration.readInterval = interval
            #expect(((try? configuration.validate()) != nil) == valid, "read interval \(interval)")
        }
    }

    @Test("connect failures: what is retried")
    func retries() {
        #expect(!ConnectFailure.refused(status: 403).isRetryable)
        #expect(!ConnectFailure.refused(status: 400).isRetryable)
        #expect(ConnectFailure.refused(status: 503).isRetryable)
        #expect(ConnectFailure.closedBeforeSnapshot(code: 1013).isRetryable)
        #expect(!ConnectFailure.closedBeforeSnapshot(code: 4401).isRetryable)
        #expect(ConnectFailure.timedOut.isRetryable)
        #expect(ConnectFailure.refused(status: 401).reason == "HTTP 401")
        #expect(ConnectFailure.closedBeforeSnapshot(code: 1013).reason == "closed 1013 before snapshot")
    }
}

@Suite("LoadReport")
struct LoadReportTests {
    static func sample() -> LoadReport {
        var histogram = LatencyHistogram()
        for value in [1, 2, 2, 3, 40] as [Int64] { histogram.record(value) }
        return LoadReport(
            url: "ws://127.0.0.1:8765/", jobIds: ["job_a", "job_b"], connectionsWanted: 100, connectionsConnected: 98, connectionsFailed: 2,
            connectFailures: ["HTTP 403": 2], connectRetries: 1, connectSeconds: 1.25, measuredSeconds: 20, messages: 12_345, deliveriesPerSecond: 617.25,
            latency: LatencySummary(histogram), negativeLatencies: 0, unreadableMessages: 0, seqGaps: 3, seqSkipped: 9, seqStale: 0,
            messagesBeforeSnapshot: 0, auditedConnections: 97, neverConflatedReceived: 5_000, neverConflatedMissing: 0, terminalReceived: 97,
            terminalMissing: 0, connectionsWithLosses: 0, closesByCode: ["4001": 1], openFileLimit: 20_000, stoppedEarly: false, notes: ["a | note"])
    }

    @Test("the table has the figures")
    func table() {
        let table = Self.sample().markdownTable
        #expect(table.hasPrefix("| metric | value |\n| --- | --- |\n"))
        #expect(table.contains("| connections wanted / connected / failed | 100 / 98 / 2 |"))
        #expect(table.contains("| connect failures | HTTP 403 × 2 |"))
        #expect(table.contains("| messages | 12,345 |"))
        #expect(table.contains("| deliveries/s | 617 |"))
        #expect(table.contains("| latency p50 / p90 / p99 / max | 2 / 40 / 40 / 40 ms |"))
        #expect(table.contains("| seq gaps (seqs skipped) | 3 (9) |"))
        #expect(table.contains("| never-conflated missing / received | 0 / 5,000 on 97 connections |"))
        #expect(table.contains("| closes by code | 4001 × 1 |"))
        #expect(table.contains("Note: a | note"))
    }

    @Test("JSON with snake_case keys, and back")
    func json() throws {
        let report = Self.sample()
        let data = try JSONEncoder().encode(report)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["deliveries_per_second"] as? Double == 617.25)
        #expect((object["latency_ms"] as? [String: Any])?["p99"] as? Int == 40)
        #expect((object["closes_by_code"] as? [String: Int])?["4001"] == 1)
        #expect(try JSONDecoder().decode(LoadReport.self, from: data) == report)
    }

    @Test("number formatting")
    func formatting() {
        #expect(Format.fixed(1.25, 1) == "1.3")
        #expect(Format.fixed(0.04, 1) == "0.0")
        #expect(Format.fixed(12, 2) == "12.00")
        #expect(Format.fixed(-1.5, 0) == "-2")
        #expect(Format.fixed(3.05, 2) == "3.05")
        #expect(Format.grouped(0) == "0")
        #expect(Format.grouped(999) == "999")
        #expect(Format.grouped(1_000) == "1,000")
        #expect(Format.grouped(-1_234_567) == "-1,234,567")
    }

    @Test("the progress line")
    func progressLine() {
        let progress = LoadProgress(
            phase: .measuring, elapsedSeconds: 12, connectionsWanted: 2000, connected: 2000, failed: 0, closedByBridge: 1, messagesPerSecond: 1523.4,
            p50: 2, p99: 9)
        #expect(progress.line == "measuring    12.0 s | 2000/2000 connected, 0 failed, 1 closed | 1,523 msg/s | p50 2 ms  p99 9 ms")
    }
}

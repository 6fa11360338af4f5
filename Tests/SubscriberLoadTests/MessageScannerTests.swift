import Testing

@testable import SubscriberLoad

@Suite("MessageScanner")
struct MessageScannerTests {
    /// 2026-11-30T15:04:05.123Z.
    static let occurredAt: Int64 = 1_796_051_045_123

    @Test("an event as the bridge writes it: data first, with nested keys of the same names")
    func bridgeEvent() {
        let text =
            #"{"data":{"id":"vid_1","job_id":"job_a","seq":999,"ts":"2020-01-01T00:00:00.000Z","type":"job.failed","#
            + #""nested":{"seq":7,"occurred_at":"2021-01-01T00:00:00Z"},"list":[{"seq":8},"seq",1]},"#
            + #""event_id":"01JDA5Q6X8M3V0F4T2B9K7C1ZR","job_id":"job_a","seq":42,"ts":"2026-11-30T15:04:05.123Z","type":"video.completed"}"#
        #expect(MessageScanner.scan(text) == ScannedMessage(kind: .mustDeliver, seq: 42, timestamp: Self.occurredAt))
    }

    @Test("a snapshot and the control messages")
    func snapshotAndControl() {
        let snapshot =
            #"{"data":{"job":null,"videos":[],"videos_total":0,"videos_truncated":false},"job_id":"job_a","seq":17,"#
            + #""ts":"2026-11-30T15:04:05.123Z","type":"job.snapshot"}"#
        #expect(MessageScanner.scan(snapshot) == ScannedMessage(kind: .snapshot, seq: 17, timestamp: Self.occurredAt))
        let ack =
            #"{"connection_id":"c1","data":{"connection_id":"c1","job_id":"job_a","server_time":"2026-11-30T15:04:05.123Z"},"#
            + #""job_id":"job_a","seq":0,"ts":"2026-11-30T15:04:05.123Z","type":"connection.ack"}"#
        #expect(MessageScanner.scan(ack).kind == .connectionAck)
        #expect(MessageScanner.scan(ack).seq == 0)
        #expect(MessageScanner.scan(#"{"data":{},"job_id":"job_a","seq":0,"ts":"2026-11-30T15:04:05.123Z","type":"pong"}"#).kind == .control)
        #expect(MessageScanner.scan(#"{"data":{"code":"x","message":"y"},"job_id":null,"seq":0,"type":"error"}"#).kind == .error)
    }

    @Test("keys in any order, whitespace anywhere, occurred_at before ts")
    func orderAndWhitespace() {
        let text = "\n { \"type\" : \"job.progress\" ,\t\"occurred_at\":\"2026-11-30T15:04:05.123Z\", \"seq\" :\r 5 , \"ts\": \"2000-01-01T00:00:00Z\" }"
        #expect(MessageScanner.scan(text) == ScannedMessage(kind: .conflatable, seq: 5, timestamp: Self.occurredAt))
    }

    @Test("escaped quotes, backslashes and brackets inside strings do not confuse it")
    func escapedStrings() {
        let text =
            #"{"data":{"title":"a \"seq\":1, \"type\":\"job.failed\" } ] {","path":"C:\\","x\\":"\\\"}"},"#
            + #""note":"\"seq\":99","seq":3,"type":"job.completed","ts":"2026-11-30T15:04:05.123Z"}"#
        #expect(MessageScanner.scan(text) == ScannedMessage(kind: .terminal, seq: 3, timestamp: Self.occurredAt))
    }

    @Test("an escaped key is not taken for seq (the bridge never escapes keys)")
    func escapedKey() {
        #expect(MessageScanner.scan(#"{"s\u0065q":4,"type":"job.progress"}"#).seq == nil)
    }

    @Test("missing fields stay nil")
    func missingFields() {
        #expect(MessageScanner.scan(#"{"type":"video.updated"}"#) == ScannedMessage(kind: .mustDeliver))
        #expect(MessageScanner.scan(#"{"seq":9}"#) == ScannedMessage(kind: .unknown, seq: 9))
        #expect(MessageScanner.scan(#"{}"#) == ScannedMessage(kind: .unknown))
        #expect(MessageScanner.scan(#"{"data":{"seq":1,"ts":"2026-11-30T15:04:05.123Z","type":"job.failed"}}"#) == ScannedMessage(kind: .unknown))
    }

    @Test("values of the wrong type are skipped, not misread")
    func wrongTypes() {
        let text = #"{"seq":"12","ts":1796051045123,"type":["job.failed"],"occurred_at":null,"x":{"type":"job.failed"}}"#
        #expect(MessageScanner.scan(text) == ScannedMessage(kind: .unknown))
        #expect(MessageScanner.scan(#"{"seq":1.5,"type":"job.progress"}"#).seq == nil)
        #expect(MessageScanner.scan(#"{"seq":1e3,"type":"job.progress"}"#).seq == nil)
        #expect(MessageScanner.scan(#"{"seq":-3}"#).seq == -3)
        #expect(MessageScanner.scan(#"{"seq":9223372036854775807}"#).seq == Int64.max)
        #expect(MessageScanner.scan(#"{"seq":9223372036854775808}"#).seq == nil)
        #expect(MessageScanner.scan(#"{"ts":"yesterday","type":"job.progress"}"#).timestamp == nil)
    }

    @Test("not an object, or cut short: no trap, nothing made up")
    func malformed() {
        #expect(MessageScanner.scan("") == ScannedMessage(kind: .unknown))
        #expect(MessageScanner.scan("[1,2]") == ScannedMessage(kind: .unknown))
        #expect(MessageScanner.scan(#""seq":1"#) == ScannedMessage(kind: .unknown))
        let full = #"{"data":{"a":"b\"c"},"seq":42,"ts":"2026-11-30T15:04:05.123Z","type":"job.canceled"}"#
        let bytes = Array(full.utf8)
        for length in 0...bytes.count {
            let scanned = bytes[..<length].withUnsafeBytes { MessageScanner.scan($0) }
            if let seq = scanned.seq { #expect(seq == 4 || seq == 42) }  // a number cut short reads shorter
            if scanned.timestamp != nil { #expect(scanned.timestamp == Self.occurredAt) }
            #expect(scanned.kind == .unknown || scanned.kind == .terminal)
        }
        #expect(bytes.withUnsafeBytes { MessageScanner.scan($0) } == ScannedMessage(kind: .terminal, seq: 42, timestamp: Self.occurredAt))
    }

    @Test(
        "types map to kinds",
        arguments: [
            ("job.progress", MessageKind.conflatable), ("job.state_changed", .mustDeliver), ("video.created", .mustDeliver),
            ("video.updated", .mustDeliver), ("video.completed", .mustDeliver), ("video.failed", .mustDeliver), ("job.completed", .terminal),
            ("job.failed", .terminal), ("job.canceled", .terminal), ("job.snapshot", .snapshot), ("connection.ack", .connectionAck),
            ("pong", .control), ("resume.ok", .control), ("error", .error), ("job.paused_for_lunch", .mustDeliver), ("video.x", .mustDeliver),
            ("jobs.progress", .unknown), ("", .unknown), ("JOB.PROGRESS", .unknown),
        ])
    func kinds(type: String, kind: MessageKind) {
        #expect(MessageScanner.scan(#"{"type":"\#(type)"}"#).kind == kind)
    }

    @Test("which kinds are live and which are never conflated")
    func kindProperties() {
        #expect(MessageKind.allCases.filter(\.isLive) == [.conflatable, .mustDeliver, .terminal])
        #expect(MessageKind.allCases.filter(\.isNeverConflated) == [.mustDeliver, .terminal])
    }
}

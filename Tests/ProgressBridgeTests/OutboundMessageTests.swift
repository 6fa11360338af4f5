import JSONSchema
import ProgressAggregation
import ProgressContract
import Testing

@testable import ProgressBridge

/// Event messages are written straight to bytes on ingest's hot path; they must be exactly what the general
/// JSON-tree path gives (every replica must send byte-identical messages, whichever path a future change takes).
@Suite("Outbound messages written straight")
struct OutboundMessageTests {
    @Test func aVideoEventsMessageIsByteForByteTheJSONTreesSerialisation() throws {
        let store = JobStore(metrics: BridgeMetrics())
        var e = StoreEvents("job_bytes")
        _ = store.apply(e.running())
        _ = store.apply(e.completed("plain", at: 1))
        _ = store.apply(e.completed("esc\"aped\\", at: 2, message: "s3://out/\"quoted\"\n\t\u{1}é✓"))
        let failure = e.make(
            .videoFailed(
                videoId: "failed/1", error: ErrorInfo(code: "RENDER", message: "line 1\nline \"2\" \u{7f}\u{0}"), retryable: true, attempt: 3,
                processingMs: 9_007_199_254_740_991),
            type: .videoFailed, at: -5)
        _ = store.apply(failure)
        let videos = try #require(store.aggregate("job_bytes")?.videos.values)
        #expect(videos.count == 3)
        for video in videos {
            let direct = OutboundMessage.event(
                type: "video.completed", jobId: "job_bytes", seq: 42, occurredAt: 1_795_515_330_123, eventId: "ev-\"1\"", writeData: video.writeJSON)
            let tree = OutboundMessage.make(
                type: "video.completed", jobId: "job_bytes", seq: 42, ts: 1_795_515_330_123, occurredAt: 1_795_515_330_123, data: video.json,
                extra: ["event_id": .string("ev-\"1\"")])
            #expect(direct.text == tree.text)
            #expect(try JSONParser().parse(direct.text)["data"] == video.json)
        }
    }

    @Test func numbersAreWrittenAsTheTreeWritesThem() {
        for number in [JSONNumber(Int64.min), JSONNumber(Int64.max), JSONNumber(Int64(0)), JSONNumber(Int64(-7)), JSONNumber(Double(50)), JSONNumber(Double(12.5)), JSONNumber(Double.nan)] {
            var bytes: [UInt8] = []
            JSONValue.writeNumber(number, into: &bytes)
            #expect(String(decoding: bytes, as: UTF8.self) == JSONValue.number(number).serialized())
        }
        #expect(JSONValue.number(JSONNumber(Int64.min)).serialized() == "-9223372036854775808")
    }
}

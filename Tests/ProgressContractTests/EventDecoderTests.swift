import Foundation
import JSONSchema
import ProgressContract
import Testing

/// The repository's own schemas, loaded as the bridge loads them.
enum ContractFixtures {
    static let schemasDirectory: String = {
        // Tests/ProgressContractTests/<this file> → repository root.
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("schemas").path
    }()

    static let decoder: EventDecoder = {
        var registry = SchemaRegistry()
        try! registry.addDirectory(schemasDirectory, uriPrefix: ContractSchemas.uriPrefix)
        return EventDecoder(validator: try! ContractSchemas.envelopeValidator(from: registry))
    }()

    static func event(_ type: String, _ data: String, id: String = "01JDA5Q6X8M3V0F4T2B9K7C1ZR", extra: String = "") -> String {
        #"{"schema_version":1,"event_id":"\#(id)","type":"\#(type)","job_id":"job_01HABCDEF0123456789","occurred_at":"2026-11-24T10:15:30.123Z","seq":812\#(extra),"data":\#(data)}"#
    }
}

@Suite("Event decoding against schemas/")
struct EventDecoderTests {
    let decoder = ContractFixtures.decoder

    func decode(_ text: String) -> Result<ProgressEvent, Rejection> { decoder.decode(Array(text.utf8)) }

    /// `EventType(named:)` finds what `init(rawValue:)` finds: every type's name, and each name one character off,
    /// cut short, extended or in another case.
    @Test func typesAreMatchedByNameAsByRawValue() {
        var names: [String] = []
        for type in EventType.allCases {
            let name = Array(type.rawValue)
            names += [type.rawValue, type.rawValue.uppercased(), String(name.dropLast()), type.rawValue + "s", " " + type.rawValue]
            for i in name.indices {
                for replacement: Character in ["x", ".", "_", "\u{301}"] where replacement != name[i] {
                    var changed = name
                    changed[i] = replacement
                    names.append(String(changed))
                }
            }
        }
        for name in names { #expect(EventType(named: name) == EventType(rawValue: name), "\(name)") }
        #expect(EventType.allCases.allSatisfy { EventType(named: $0.rawValue) == $0 })
    }

    @Test func theContractExampleIsValid() throws {
        let text = #"""
            {"schema_version":1,"event_id":"01JDA5Q6X8M3V0F4T2B9K7C1ZR","type":"video.completed",
             "job_id":"job_01HABCDEF0123456789","occurred_at":"2026-11-24T10:15:30.123Z","seq":812,
             "data":{"video_id":"vid_0042","processing_ms":48210,"attempt":1,
                     "output_url":"s3://content-outputs/job_01HABCDEF0123456789/vid_0042.mp4"}}
            """#
        let event = try decode(text).get()
        #expect(event.type == .videoCompleted)
        #expect(event.seq == 812)
        #expect(event.occurredAt == RFC3339.parseMilliseconds("2026-11-24T10:15:30.123Z"))
        #expect(event.payload == .videoCompleted(videoId: "vid_0042", processingMs: 48210, outputURL: "s3://content-outputs/job_01HABCDEF0123456789/vid_0042.mp4", attempt: 1))
    }

    @Test(arguments: [
        ("job.state_changed", #"{"from":null,"to":"running","job":{"title":"T","total_videos":10,"processing_deadline_ms":7200000,"created_at":"2025-11-05T00:52:13Z","priority":"normal","sheet_source":{"sheet_id":"1A","range":"A1:Z1000"}}}"#),
        ("job.progress", #"{"total_videos":10,"completed":2,"failed":1,"skipped":0,"processing":3,"percent_complete":30}"#),
        ("video.created", #"{"video_id":"v1","row_index":2,"title":"Intro"}"#),
        ("video.updated", #"{"video_id":"v1","state":"processing","progress_percent":40.5,"stage":"render","attempt":1}"#),
        ("video.completed", #"{"video_id":"v1","processing_ms":1000}"#),
        ("video.failed", #"{"video_id":"v1","error":{"code":"E","message":"boom"},"retryable":true,"attempt":2}"#),
        ("job.completed", #"{"summary":{"total_videos":10,"completed":9,"failed":1,"skipped":0,"duration_ms":5000}}"#),
        ("job.completed", #"{}"#),
        ("job.failed", #"{"error":{"code":"E","message":"boom"}}"#),
        ("job.canceled", #"{"reason":"user","canceled_by":"ops"}"#),
    ])
    func everyTypeDecodes(type: String, data: String) throws {
        let event = try decode(ContractFixtures.event(type, data)).get()
        #expect(event.type.rawValue == type)
    }

    @Test func unknownExtraFieldsAreIgnored() throws {
        _ = try decode(ContractFixtures.event("video.created", #"{"video_id":"v1","new_field":[1,2]}"#, extra: #","producer":"v2""#)).get()
    }

    @Test(arguments: [
        ("not json", RejectionReason.malformedJSON),
        (#"{"a":1,"a":2}"#, .malformedJSON),
        (#"[1,2]"#, .schemaViolation),
        (#"{"schema_version":2,"event_id":"e","type":"job.progress","job_id":"job_1","occurred_at":"2026-11-24T10:15:30Z","data":{}}"#, .unsupportedSchemaVersion),
        (#"{"schema_version":1,"event_id":"e","type":"video.exploded","job_id":"job_1","occurred_at":"2026-11-24T10:15:30Z","data":{}}"#, .unknownType),
        (#"{"schema_version":1,"event_id":"e","type":"video.completed","job_id":"job_1","occurred_at":"2026-11-24T10:15:30Z","data":{"video_id":"v"}}"#, .schemaViolation),
        (#"{"schema_version":1,"event_id":"e","type":"job.progress","job_id":"1234","occurred_at":"2026-11-24T10:15:30Z","data":{"total_videos":1,"completed":0,"failed":0}}"#, .schemaViolation),
        (#"{"schema_version":1,"event_id":"","type":"job.failed","job_id":"job_1","occurred_at":"2026-11-24T10:15:30Z","data":{"error":{"code":"x","message":"y"}}}"#, .schemaViolation),
        (#"{"schema_version":1,"event_id":"e","type":"video.updated","job_id":"job_1","occurred_at":"2026-11-24T10:15:30Z","data":{"video_id":"v","state":"completed"}}"#, .schemaViolation),
        (#"{"schema_version":1,"event_id":"e","type":"job.progress","job_id":"job_1","occurred_at":"not a time at all, really","data":{"total_videos":1,"completed":0,"failed":0}}"#, .schemaViolation),
        (#"{"schema_version":1,"event_id":"e","type":"job.progress","job_id":"job_1","occurred_at":"2026-11-24T10:15:30Z","data":{"total_videos":-1,"completed":0,"failed":0}}"#, .schemaViolation),
        (#"{"schema_version":1,"event_id":"e","type":"job.progress","job_id":"job_1","occurred_at":"2026-11-24T10:15:30Z"}"#, .schemaViolation),
    ])
    func invalidEventsAreRejectedWithTheirReason(text: String, reason: RejectionReason) {
        guard case .failure(let rejection) = decode(text) else {
            Issue.record("accepted: \(text)")
            return
        }
        #expect(rejection.reason == reason, "\(rejection)")
        #expect(!rejection.detail.isEmpty)
    }

    @Test func schemaViolationDetailSaysWhere() {
        guard case .failure(let rejection) = decode(ContractFixtures.event("video.completed", #"{"video_id":"v"}"#)) else {
            Issue.record("accepted")
            return
        }
        #expect(rejection.detail.contains("/data"))
        #expect(rejection.detail.contains("processing_ms"))
    }
}

import JSONSchema
import NIOCore
import ProgressContract

/// One server → client message, serialized once and shared by every subscriber.
public struct OutboundMessage: Sendable {
    /// The message `type` (an event type, `job.snapshot`, `connection.ack`, `pong`, `error`, …).
    public let type: String
    public let jobId: String?
    /// The bridge's per-job sequence number (0 for connection-level messages).
    public let seq: Int64
    /// Event time of the underlying event, for the delivery-age metric.
    public let occurredAt: Int64?
    /// The JSON text of the frame, as bytes: one buffer shared by every subscriber's write (no copy per subscriber).
    public let frame: ByteBuffer

    /// The JSON text of the frame.
    public var text: String { String(buffer: frame) }

    /// Bytes of the frame's text, what it costs to hold it.
    public var byteCount: Int { frame.readableBytes }

    init(type: String, jobId: String?, seq: Int64, occurredAt: Int64?, frame: ByteBuffer) {
        self.type = type
        self.jobId = jobId
        self.seq = seq
        self.occurredAt = occurredAt
        self.frame = frame
    }

    /// A message of the JSON text `text`.
    init(type: String, jobId: String?, seq: Int64, occurredAt: Int64?, text: String) {
        self.init(type: type, jobId: jobId, seq: seq, occurredAt: occurredAt, frame: ByteBuffer(string: text))
    }

    /// Whether a newer message of the same job may replace this one before it is sent
    /// (only `job.progress`; terminal events and failures are never conflated).
    public var isConflatable: Bool { type == EventType.jobProgress.rawValue }

    /// Builds `{"type", "job_id", "seq", "ts", "data", …extra}`.
    static func make(type: String, jobId: String?, seq: Int64, ts: Int64, occurredAt: Int64?, data: JSONValue, extra: JSONObject = [:]) -> OutboundMessage {
        var object = extra
        object["type"] = .string(type)
        object["job_id"] = jobId.map(JSONValue.string) ?? .null
        object["seq"] = .number(JSONNumber(seq))
        object["ts"] = .string(RFC3339.format(milliseconds: ts))
        object["data"] = data
        return OutboundMessage(type: type, jobId: jobId, seq: seq, occurredAt: occurredAt, frame: ByteBuffer(string: JSONValue.object(object).serialized()))
    }

    /// An event's message, `{"data","event_id","job_id","seq","traceparent"?,"ts","type"}` — the bytes `make` gives
    /// for it, written straight (keys in sorted order) with `data` from `writeData`: one per applied event, on
    /// ingest's hot path. `traceparent` (already checked) is the event record's.
    static func event(
        type: String, jobId: String, seq: Int64, occurredAt: Int64, eventId: String, traceparent: String? = nil, writeData: (inout [UInt8]) -> Void
    ) -> OutboundMessage {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        out.append(contentsOf: #"{"data":"#.utf8)
        writeData(&out)
        out.append(contentsOf: #","event_id":"#.utf8)
        JSONValue.writeEscaped(eventId, into: &out)
        out.append(contentsOf: #","job_id":"#.utf8)
        JSONValue.writeEscaped(jobId, into: &out)
        out.append(contentsOf: #","seq":"#.utf8)
        JSONValue.writeNumber(JSONNumber(seq), into: &out)
        if let traceparent {
            out.append(contentsOf: #","traceparent":"#.utf8)
            JSONValue.writeEscaped(traceparent, into: &out)
        }
        out.append(contentsOf: #","ts":""#.utf8)
        RFC3339.write(milliseconds: occurredAt, into: &out)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: #","type":"#.utf8)
        JSONValue.writeEscaped(type, into: &out)
        out.append(UInt8(ascii: "}"))
        return OutboundMessage(type: type, jobId: jobId, seq: seq, occurredAt: occurredAt, frame: ByteBuffer(bytes: out))
    }

    /// `{"type":"error","data":{"code","message"}}`.
    static func error(code: String, message: String, jobId: String? = nil, now: Int64) -> OutboundMessage {
        make(type: "error", jobId: jobId, seq: 0, ts: now, occurredAt: nil, data: .object(["code": .string(code), "message": .string(message)]))
    }
}

import JSONSchema
import NIOCore
import ProgressContract

/// One server → client message, serialized once and shared by every subscriber (a class: queued for thousands of
/// subscribers, it is one reference each, one retain per copy, not one per field).
public final class OutboundMessage: Sendable {
    /// The message `type` (an event type, `job.snapshot`, `connection.ack`, `pong`, `error`, …).
    public let type: String
    public let jobId: String?
    /// The bridge's per-job sequence number (0 for connection-level messages).
    public let seq: Int64
    /// Event time of the underlying event, for the delivery-age metric.
    public let occurredAt: Int64?
    /// The JSON text of the frame, as bytes (a view into `wire`).
    public let frame: ByteBuffer
    /// The whole WebSocket frame as it goes on the wire — header and payload (a server's frames are not masked, so
    /// they are the same bytes for every subscriber): one buffer, encoded once and shared by every subscriber's write.
    let wire: ByteBuffer

    private static let allocator = ByteBufferAllocator()

    /// The JSON text of the frame.
    public var text: String { String(buffer: frame) }

    /// Bytes of the frame's text, what it costs to hold it.
    public var byteCount: Int { frame.readableBytes }

    /// A message whose JSON text is `payload`.
    init(type: String, jobId: String?, seq: Int64, occurredAt: Int64?, payload: some Collection<UInt8>) {
        self.type = type
        self.jobId = jobId
        self.seq = seq
        self.occurredAt = occurredAt
        // One allocation of the frame's exact size (an empty buffer would be copied into a bigger one).
        var wire = Self.allocator.buffer(capacity: payload.count + 10)
        let headerLength = WebSocketTextFrameHeader.write(payloadLength: payload.count, into: &wire)
        wire.writeBytes(payload)
        self.wire = wire
        self.frame = wire.getSlice(at: headerLength, length: payload.count)!
    }

    /// A message of the JSON text `text`.
    convenience init(type: String, jobId: String?, seq: Int64, occurredAt: Int64?, text: String) {
        self.init(type: type, jobId: jobId, seq: seq, occurredAt: occurredAt, payload: text.utf8)
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
        return OutboundMessage(type: type, jobId: jobId, seq: seq, occurredAt: occurredAt, text: JSONValue.object(object).serialized())
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
        return OutboundMessage(type: type, jobId: jobId, seq: seq, occurredAt: occurredAt, payload: out)
    }

    /// `{"type":"error","data":{"code","message"}}`.
    static func error(code: String, message: String, jobId: String? = nil, now: Int64) -> OutboundMessage {
        make(type: "error", jobId: jobId, seq: 0, ts: now, occurredAt: nil, data: .object(["code": .string(code), "message": .string(message)]))
    }
}

/// The header of an unmasked, final text frame (RFC 6455 §5.2): what a server puts before a message's payload.
enum WebSocketTextFrameHeader {
    /// Writes the header for a payload of `payloadLength` bytes into `buffer` (reserving room for the payload);
    /// returns the header's length (2, 4 or 10 bytes).
    @discardableResult
    static func write(payloadLength: Int, into buffer: inout ByteBuffer) -> Int {
        precondition(payloadLength >= 0)
        let finText: UInt8 = 0x81  // FIN, opcode 1 (text), no mask
        switch payloadLength {
        case ..<126:
            buffer.reserveCapacity(minimumWritableBytes: 2 + payloadLength)
            return buffer.writeInteger(finText) + buffer.writeInteger(UInt8(payloadLength))
        case ...Int(UInt16.max):
            buffer.reserveCapacity(minimumWritableBytes: 4 + payloadLength)
            return buffer.writeInteger(finText) + buffer.writeInteger(UInt8(126)) + buffer.writeInteger(UInt16(payloadLength))
        default:
            buffer.reserveCapacity(minimumWritableBytes: 10 + payloadLength)
            return buffer.writeInteger(finText) + buffer.writeInteger(UInt8(127)) + buffer.writeInteger(UInt64(payloadLength))
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a server → client message is, as far as the load generator cares.
///
/// The bridge conflates only `job.progress` (a newer one replaces an unsent older one, so its `seq` may be
/// skipped); every other live message is never dropped on an open connection. The kinds follow that line.
public enum MessageKind: UInt8, Sendable, Equatable, CaseIterable {
    /// A type the load generator does not know (and no `job.` / `video.` prefix).
    case unknown
    /// `connection.ack`, the first message of a connection (`seq` 0).
    case connectionAck
    /// `job.snapshot`, the job's state after the ack; its `seq` is the job's current seq.
    case snapshot
    /// `job.progress`: may be conflated by the bridge, so a skipped seq here is no loss.
    case conflatable
    /// A live event that is never conflated (`job.state_changed`, `video.*`, and any other `job.` / `video.` type
    /// except the terminal ones).
    case mustDeliver
    /// `job.completed`, `job.failed`, `job.canceled`: never conflated either, and counted apart.
    case terminal
    /// `pong`, `resume.ok` (`seq` 0).
    case control
    /// `error` (`seq` 0).
    case error

    /// Whether the message is one of the job's live events (what "deliveries" count).
    public var isLive: Bool {
        switch self {
        case .conflatable, .mustDeliver, .terminal: true
        default: false
        }
    }

    /// Whether the bridge promises to deliver every message of this kind to an open connection.
    public var isNeverConflated: Bool { self == .mustDeliver || self == .terminal }
}

/// The few top-level fields of a message the load generator reads.
public struct ScannedMessage: Sendable, Equatable {
    /// The message kind, from its `type`.
    public var kind: MessageKind
    /// The top-level `seq`, if it is there and an integer.
    public var seq: Int64?
    /// The event time in milliseconds since the Unix epoch: a top-level `occurred_at` if there is one, else `ts`
    /// (the bridge puts an event's `occurred_at` into `ts`).
    public var timestamp: Int64?

    /// Creates a scanned message.
    public init(kind: MessageKind, seq: Int64? = nil, timestamp: Int64? = nil) {
        self.kind = kind
        self.seq = seq
        self.timestamp = timestamp
    }
}

/// Reads `type`, `seq` and `ts` / `occurred_at` from the top level of a JSON object without parsing the rest.
///
/// One forward pass over the bytes, tracking only string and nesting state: the bridge writes `data` (the bulk of
/// an event) first, and its nested objects may have keys of the same names, so a plain substring search is not
/// enough; a full parse per message would cost more than everything else the client does. Malformed input never
/// traps: whatever could not be read is left `nil` / `.unknown`.
public enum MessageScanner {
    /// Scans the UTF-8 bytes of one text message.
    public static func scan(_ bytes: UnsafeRawBufferPointer) -> ScannedMessage {
        bytes.withMemoryRebound(to: UInt8.self) { buffer in
            guard let base = buffer.baseAddress else { return ScannedMessage(kind: .unknown) }
            return scan(base, count: buffer.count)
        }
    }

    /// Scans a message given as a string (tests, tools).
    public static func scan(_ text: String) -> ScannedMessage {
        var text = text
        return text.withUTF8 { scan(UnsafeRawBufferPointer($0)) }
    }

    // Hot path: raw pointers and byte literals (`0x22` is `"`), so that even a debug build does little per byte.
    private static func scan(_ p: UnsafePointer<UInt8>, count: Int) -> ScannedMessage {
        var result = ScannedMessage(kind: .unknown)
        var ts: Int64?
        var occurredAt: Int64?
        var i = skipWhitespace(p, count, from: 0)
        guard i < count, p[i] == 0x7B else { return result }  // {
        i += 1
        var depth = 1
        var expectingKey = true
        scanning: while i < count {
            switch p[i] {
            case 0x22 where depth == 1 && expectingKey:  // " starting a top-level key
                guard let keyEnd = endOfString(p, count, contentStart: i + 1) else { break scanning }
                let key = TopLevelKey(p + i + 1, count: keyEnd - i - 1)
                i = skipWhitespace(p, count, from: keyEnd + 1)
                guard i < count, p[i] == 0x3A else { break scanning }  // :
                i = skipWhitespace(p, count, from: i + 1)
                expectingKey = false
                switch key {
                case .seq:
                    if let (value, next) = parseInteger(p, count, from: i) {
                        result.seq = value
                        i = next
                    }
                case .ts, .occurredAt, .type:
                    guard i < count, p[i] == 0x22 else { continue scanning }  // not a string: walked below
                    guard let end = endOfString(p, count, contentStart: i + 1) else { break scanning }
                    let content = UnsafeRawBufferPointer(start: p + i + 1, count: end - i - 1)
                    switch key {
                    case .type: result.kind = classify(content)
                    case .ts: ts = RFC3339Timestamp.milliseconds(content)
                    default: occurredAt = RFC3339Timestamp.milliseconds(content)
                    }
                    i = end + 1
                case .other:
                    break  // its value is walked by the loop like any other
                }
            case 0x22:  // any other string: skipped whole
                guard let end = endOfString(p, count, contentStart: i + 1) else { break scanning }
                i = end + 1
            case 0x7B, 0x5B:  // { [
                depth += 1
                i += 1
            case 0x7D, 0x5D:  // } ]
                depth -= 1
                i += 1
                if depth == 0 { break scanning }
            case 0x2C:  // ,
                if depth == 1 { expectingKey = true }
                i += 1
            default:
                i += 1
            }
        }
        result.timestamp = occurredAt ?? ts
        return result
    }

    /// The kind a `type` value names. Only exact, unescaped spellings are recognised (the bridge writes no escapes
    /// in types); an unknown `job.` / `video.` type counts as a never-conflated event, as the bridge conflates
    /// `job.progress` only.
    static func classify(_ type: UnsafeRawBufferPointer) -> MessageKind {
        guard let start = type.baseAddress else { return .unknown }
        for (spelling, kind) in typeSpellings where spelling.utf8CodeUnitCount == type.count {
            if memcmp(spelling.utf8Start, start, type.count) == 0 { return kind }
        }
        if type.starts(with: "job.".utf8) || type.starts(with: "video.".utf8) { return .mustDeliver }
        return .unknown
    }

    /// Most frequent first.
    private static let typeSpellings: [(StaticString, MessageKind)] = [
        ("job.progress", .conflatable),
        ("video.updated", .mustDeliver),
        ("video.completed", .mustDeliver),
        ("video.created", .mustDeliver),
        ("video.failed", .mustDeliver),
        ("job.state_changed", .mustDeliver),
        ("job.completed", .terminal),
        ("job.failed", .terminal),
        ("job.canceled", .terminal),
        ("job.snapshot", .snapshot),
        ("connection.ack", .connectionAck),
        ("pong", .control),
        ("resume.ok", .control),
        ("error", .error),
    ]

    /// The index of the quote that ends the string whose content starts at `contentStart`, or `nil` if it does not
    /// end. `memchr` finds each quote; one preceded by an odd run of backslashes is escaped content.
    static func endOfString(_ p: UnsafePointer<UInt8>, _ count: Int, contentStart: Int) -> Int? {
        var from = contentStart
        while from < count, let found = memchr(p + from, 0x22, count - from) {
            let quote = UnsafeRawPointer(found) - UnsafeRawPointer(p)
            var backslashes = 0
            while quote - backslashes - 1 >= contentStart, p[quote - backslashes - 1] == 0x5C { backslashes += 1 }
            if backslashes % 2 == 0 { return quote }
            from = quote + 1
        }
        return nil
    }

    /// A JSON integer at `start` (optional minus, digits, not followed by a fraction or an exponent) and the index
    /// after it; `nil` if there is none or it does not fit in 64 bits.
    static func parseInteger(_ p: UnsafePointer<UInt8>, _ count: Int, from start: Int) -> (Int64, Int)? {
        var i = start
        let negative = i < count && p[i] == 0x2D  // -
        if negative { i += 1 }
        let digitsStart = i
        var value: Int64 = 0
        while i < count, p[i] &- 0x30 < 10 {
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(Int64(p[i] &- 0x30))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
            i += 1
        }
        guard i > digitsStart else { return nil }
        if i < count, p[i] == 0x2E || p[i] == 0x65 || p[i] == 0x45 { return nil }  // . e E
        return (negative ? -value : value, i)
    }

    private static func skipWhitespace(_ p: UnsafePointer<UInt8>, _ count: Int, from start: Int) -> Int {
        var i = start
        while i < count, p[i] == 0x20 || p[i] == 0x09 || p[i] == 0x0A || p[i] == 0x0D { i += 1 }
        return i
    }
}

/// The top-level keys the scanner reads, recognised from their raw bytes.
private enum TopLevelKey {
    case seq, ts, occurredAt, type, other

    init(_ key: UnsafePointer<UInt8>, count: Int) {
        func equals(_ name: StaticString) -> Bool { memcmp(name.utf8Start, key, count) == 0 }
        switch count {
        case 2 where equals("ts"): self = .ts
        case 3 where equals("seq"): self = .seq
        case 4 where equals("type"): self = .type
        case 11 where equals("occurred_at"): self = .occurredAt
        default: self = .other
        }
    }
}

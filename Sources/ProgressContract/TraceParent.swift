/// W3C Trace Context's `traceparent` (https://www.w3.org/TR/trace-context/#traceparent-header): carried from an
/// event's Kafka header into the bridge's logs and onto the messages the event causes, and from a command request to
/// the command topic. Only a well-formed value is carried; anything else from outside is dropped, never echoed.
public enum TraceParent {
    /// The value if `bytes` is a valid version-00 `traceparent` (`00-<32 hex trace id>-<16 hex parent id>-<2 hex
    /// flags>`, lower case, ids not all zero), else nil. (Higher versions are read as 00 by the spec; the bridge
    /// carries only what it can check.)
    public static func parse(_ bytes: some Collection<UInt8>) -> String? {
        guard bytes.count == 55 else { return nil }
        let b = Array(bytes)
        guard b[0] == UInt8(ascii: "0"), b[1] == UInt8(ascii: "0"), b[2] == UInt8(ascii: "-"), b[35] == UInt8(ascii: "-"), b[52] == UInt8(ascii: "-")
        else { return nil }
        let hex = { (range: Range<Int>) -> Bool in
            b[range].allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
        }
        let nonZero = { (range: Range<Int>) -> Bool in b[range].contains { $0 != UInt8(ascii: "0") } }
        guard hex(3..<35), hex(36..<52), hex(53..<55), nonZero(3..<35), nonZero(36..<52) else { return nil }
        return String(decoding: b, as: UTF8.self)
    }

    /// The value of a string, if valid.
    public static func parse(_ text: String?) -> String? {
        text.flatMap { parse(Array($0.utf8)) }
    }

    /// A new trace (random trace id and parent id, sampled), for a request that came without one.
    public static func start() -> String {
        var random = SystemRandomNumberGenerator()
        func hex(_ count: Int) -> String {
            let digits = Array("0123456789abcdef")
            var out = ""
            repeat {
                out = String((0..<count).map { _ in digits[Int(random.next() % 16)] })
            } while out.allSatisfy { $0 == "0" }
            return out
        }
        return "00-\(hex(32))-\(hex(16))-01"
    }
}

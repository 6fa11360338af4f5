/// A `format` that is checked (when format assertion is on).
struct FormatAssertion: Sendable {
    let name: String
    private let check: @Sendable (String) -> Bool

    /// The formats this validator can assert; others stay annotations.
    init?(name: String) {
        self.name = name
        switch name {
        case "date-time": check = { RFC3339.parseMilliseconds($0) != nil }
        case "date": check = { RFC3339.parseDate(Substring($0)) != nil }
        case "time": check = { RFC3339.isValidTime(Substring($0)) }
        case "duration": check = FormatCheckers.isDuration
        case "uuid": check = FormatCheckers.isUUID
        case "ipv4": check = { FormatCheckers.isIPv4(Substring($0)) }
        case "ipv6": check = { FormatCheckers.isIPv6(Substring($0)) }
        case "email": check = FormatCheckers.isEmail
        case "hostname": check = FormatCheckers.isHostname
        case "json-pointer": check = FormatCheckers.isJSONPointer
        case "regex": check = { (try? ECMARegex($0)) != nil }
        case "uri": check = FormatCheckers.isURI
        case "uri-reference": check = FormatCheckers.isURIReference
        default: return nil
        }
    }

    func accepts(_ string: String) -> Bool { check(string) }


}

/// RFC 3339 timestamps, to and from milliseconds since the Unix epoch (UTC), without Foundation.
public enum RFC3339 {
    /// Parses `2026-11-24T10:15:30.123Z` (any offset; fraction optional) into epoch milliseconds.
    public static func parseMilliseconds(_ string: String) -> Int64? {
        // On the UTF-8 bytes in place: every event's `occurred_at` comes through here (twice: format check and
        // decoding), and `String` indexing costs far more than the parse.
        var string = string
        return string.withUTF8 { parseMilliseconds(bytes: $0) }
    }

    /// `parseMilliseconds(_:)` over UTF-8 bytes.
    static func parseMilliseconds(bytes s: UnsafeBufferPointer<UInt8>) -> Int64? {
        // `YYYY-MM-DD` is exactly ten bytes, so the date and time separator can only be the eleventh.
        guard s.count >= 20, s[10] == UInt8(ascii: "T") || s[10] == UInt8(ascii: "t") || s[10] == UInt8(ascii: " "),
            let days = parseDate(bytes: UnsafeBufferPointer(rebasing: s[0..<10])),
            let timeMillis = parseTime(bytes: UnsafeBufferPointer(rebasing: s[11...]))
        else { return nil }
        return days * 86_400_000 + timeMillis
    }

    /// Parses `YYYY-MM-DD` into days since the epoch.
    static func parseDate(_ s: Substring) -> Int64? {
        var string = String(s)
        return string.withUTF8 { parseDate(bytes: $0) }
    }

    private static func parseDate(bytes s: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard s.count == 10, s[4] == UInt8(ascii: "-"), s[7] == UInt8(ascii: "-"),
            let y = digits(s[0..<4]), let m = digits(s[5..<7]), let d = digits(s[8..<10]),
            (1...12).contains(m), d >= 1, d <= daysInMonth(y, m)
        else { return nil }
        return daysFromCivil(y, m, d)
    }

    static func isValidTime(_ s: Substring) -> Bool {
        var string = String(s)
        return string.withUTF8 { parseTime(bytes: $0) } != nil
    }

    /// Parses `HH:MM:SS[.frac](Z|±HH:MM)` into milliseconds from midnight UTC (may be negative or past a day).
    private static func parseTime(bytes chars: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard chars.count >= 9, chars[2] == UInt8(ascii: ":"), chars[5] == UInt8(ascii: ":"),
            let h = digits(chars[0..<2]), let mi = digits(chars[3..<5]), let sec = digits(chars[6..<8]),
            h <= 23, mi <= 59, sec <= 60
        else { return nil }
        var i = 8
        var millis: Int64 = 0
        if chars[i] == UInt8(ascii: ".") {
            i += 1
            let start = i
            while i < chars.count, chars[i] >= 0x30, chars[i] <= 0x39 { i += 1 }
            guard i > start else { return nil }
            let fraction = chars[start..<min(i, start + 3)]
            millis = digits(fraction)! * [1, 100, 10, 1][fraction.count]
        }
        guard i < chars.count else { return nil }
        var offsetMinutes: Int64 = 0
        switch chars[i] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            guard i + 1 == chars.count else { return nil }
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard chars.count - i == 6, chars[i + 3] == UInt8(ascii: ":"),
                let oh = digits(chars[(i + 1)..<(i + 3)]), let om = digits(chars[(i + 4)..<(i + 6)]), oh <= 23, om <= 59
            else { return nil }
            offsetMinutes = (oh * 60 + om) * (chars[i] == UInt8(ascii: "+") ? 1 : -1)
        default: return nil
        }
        if sec == 60 {
            // A leap second is only valid at 23:59:60 UTC.
            let utcMinutes = ((h * 60 + mi - offsetMinutes) % 1440 + 1440) % 1440
            guard utcMinutes == 1439 else { return nil }
        }
        return ((h * 60 + mi - offsetMinutes) * 60 + min(sec, 59)) * 1000 + millis
    }

    /// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    /// Instants outside years 0000–9999 (which RFC 3339 cannot write) are clamped to that range.
    public static func format(milliseconds unclamped: Int64) -> String {
        String(unsafeUninitializedCapacity: 24) { buffer in
            write(milliseconds: unclamped, into: buffer)
            return 24
        }
    }

    /// Appends `format(milliseconds:)`'s 24 bytes to `out`, without making a `String` (for serialisers).
    public static func write(milliseconds: Int64, into out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { buffer in
            write(milliseconds: milliseconds, into: buffer)
            out.append(contentsOf: buffer)
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` into the first 24 bytes of `buffer` (years clamped to 0000…9999).
    private static func write(milliseconds unclamped: Int64, into buffer: UnsafeMutableBufferPointer<UInt8>) {
        let milliseconds = min(max(unclamped, -62_167_219_200_000), 253_402_300_799_999)
        let days = floorDiv(milliseconds, 86_400_000)
        let msOfDay = milliseconds - days * 86_400_000
        let (y, m, d) = civilFromDays(days)
        var index = 0
        func put(_ value: Int64, _ width: Int, then separator: UInt8?) {
            var v = value
            for i in stride(from: width - 1, through: 0, by: -1) {
                buffer[index + i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            }
            index += width
            if let separator {
                buffer[index] = separator
                index += 1
            }
        }
        put(y, 4, then: UInt8(ascii: "-"))
        put(m, 2, then: UInt8(ascii: "-"))
        put(d, 2, then: UInt8(ascii: "T"))
        put(msOfDay / 3_600_000, 2, then: UInt8(ascii: ":"))
        put(msOfDay / 60_000 % 60, 2, then: UInt8(ascii: ":"))
        put(msOfDay / 1000 % 60, 2, then: UInt8(ascii: "."))
        put(msOfDay % 1000, 3, then: UInt8(ascii: "Z"))
    }

    private static func digits<C: Collection>(_ c: C) -> Int64? where C.Element == UInt8 {
        guard !c.isEmpty else { return nil }
        var v: Int64 = 0
        for b in c {
            guard b >= 0x30, b <= 0x39 else { return nil }
            v = v * 10 + Int64(b - 0x30)
        }
        return v
    }

    /// Rounds towards −∞ (`b > 0`); no negation, so `Int64.min` (from a corrupt state record) cannot trap.
    private static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : (a + 1) / b - 1 }

    static func daysInMonth(_ y: Int64, _ m: Int64) -> Int64 {
        switch m {
        case 2: (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    // Howard Hinnant's days_from_civil / civil_from_days.
    static func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}

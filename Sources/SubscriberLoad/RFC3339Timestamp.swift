/// Parses RFC 3339 date-times into milliseconds since the Unix epoch, without Foundation and without allocating:
/// it runs once per received message.
public enum RFC3339Timestamp {
    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`T` may be `t` or a space, `Z` may be `z`) in milliseconds since
    /// 1970-01-01T00:00:00Z; a fraction finer than milliseconds is truncated. `nil` for anything else, including
    /// impossible dates (February 30) and trailing bytes.
    public static func milliseconds(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        // Byte literals: 0x2D "-", 0x3A ":", 0x2E ".", 0x2B "+", 0x54/0x74 "T"/"t", 0x20 " ", 0x5A/0x7A "Z"/"z".
        let count = bytes.count
        func digit(_ byte: UInt8) -> UInt8? {
            let value = byte &- 0x30
            return value < 10 ? value : nil
        }
        guard count >= 20 else { return nil }
        func number(_ at: Int, _ width: Int) -> Int64? {
            var value: Int64 = 0
            for i in at..<(at + width) {
                guard let digit = digit(bytes[i]) else { return nil }
                value = value * 10 + Int64(digit)
            }
            return value
        }
        guard let year = number(0, 4), bytes[4] == 0x2D,
            let month = number(5, 2), bytes[7] == 0x2D,
            let day = number(8, 2), bytes[10] == 0x54 || bytes[10] == 0x74 || bytes[10] == 0x20,
            let hour = number(11, 2), bytes[13] == 0x3A,
            let minute = number(14, 2), bytes[16] == 0x3A,
            let second = number(17, 2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysInMonth(year: year, month: month),
            hour <= 23, minute <= 59, second <= 60  // 60: a leap second
        else { return nil }

        var i = 19
        var millisecond: Int64 = 0
        if bytes[i] == 0x2E {
            i += 1
            let fractionStart = i
            var scale: Int64 = 100
            while i < count, let digit = digit(bytes[i]) {
                millisecond += Int64(digit) * scale
                scale /= 10
                i += 1
            }
            guard i > fractionStart else { return nil }
        }
        guard i < count else { return nil }
        var offsetMinutes: Int64 = 0
        switch bytes[i] {
        case 0x5A, 0x7A:
            i += 1
        case 0x2B, 0x2D:
            guard i + 6 == count, let offsetHour = number(i + 1, 2), bytes[i + 3] == 0x3A, let offsetMinute = number(i + 4, 2),
                offsetHour <= 23, offsetMinute <= 59
            else { return nil }
            offsetMinutes = (offsetHour * 60 + offsetMinute) * (bytes[i] == 0x2D ? -1 : 1)
            i += 6
        default:
            return nil
        }
        guard i == count else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = ((days * 24 + hour) * 60 + minute - offsetMinutes) * 60 + second
        return seconds * 1000 + millisecond
    }

    /// Parses a string (tests, tools).
    public static func milliseconds(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { milliseconds(UnsafeRawBufferPointer($0)) }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let monthFromMarch = (month + 9) % 12
        let dayOfYear = (153 * monthFromMarch + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    private static func daysInMonth(year: Int64, month: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

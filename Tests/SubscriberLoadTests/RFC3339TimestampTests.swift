import Testing

@testable import SubscriberLoad

@Suite("RFC3339Timestamp")
struct RFC3339TimestampTests {
    @Test(
        "valid date-times",
        arguments: [
            ("1970-01-01T00:00:00Z", Int64(0)),
            ("1970-01-01T00:00:00.000Z", 0),
            ("2026-11-30T15:04:05.123Z", 1_796_051_045_123),
            ("2026-11-30t15:04:05.123z", 1_796_051_045_123),
            ("2026-11-30 15:04:05.123Z", 1_796_051_045_123),
            ("2026-11-30T16:04:05.123+01:00", 1_796_051_045_123),
            ("2026-11-30T10:34:05.123-04:30", 1_796_051_045_123),
            ("2026-11-30T15:04:05.1Z", 1_796_051_045_100),
            ("2026-11-30T15:04:05.12Z", 1_796_051_045_120),
            ("2026-11-30T15:04:05.123999Z", 1_796_051_045_123),
            ("2024-02-29T23:59:59.999Z", 1_709_251_199_999),
            ("1969-12-31T23:59:59.500Z", -500),
            ("0001-01-01T00:00:00Z", -62_135_596_800_000),
            ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
            ("2016-12-31T23:59:60Z", 1_483_228_800_000),  // a leap second reads as the next second
        ])
    func valid(text: String, milliseconds: Int64) {
        #expect(RFC3339Timestamp.milliseconds(text) == milliseconds)
    }

    @Test(
        "invalid date-times",
        arguments: [
            "", "2026-11-30", "2026-11-30T15:04:05", "2026-11-30T15:04:05.Z", "2026-11-30T15:04:05.123", "2026-11-30T15:04:05.123Zx",
            "2026-11-30T15:04:05.123+01", "2026-11-30T15:04:05.123+0100", "2026-11-30T15:04:05.123+24:00", "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z", "2026-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-11-30T24:00:00Z",
            "2026-11-30T23:60:00Z", "2026-11-30T23:59:61Z", "2026-11-30X15:04:05Z", "2026/11/30T15:04:05Z", "+2026-11-30T15:04:05Z",
            "2026-11-3OT15:04:05Z", " 2026-11-30T15:04:05Z",
        ])
    func invalid(text: String) {
        #expect(RFC3339Timestamp.milliseconds(text) == nil)
    }

    @Test("round trip over many instants, against a reference formatter")
    func roundTrip() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            let milliseconds = Int64.random(in: -62_135_596_800_000...253_402_300_799_999, using: &generator)
            #expect(RFC3339Timestamp.milliseconds(Self.format(milliseconds)) == milliseconds)
        }
    }

    @Test("days from the civil date agree with counting days")
    func civilDays() {
        var days: Int64 = 0
        for year in Int64(1970)...2100 {
            for month in Int64(1)...12 {
                #expect(RFC3339Timestamp.daysFromCivil(year: year, month: month, day: 1) == days)
                let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
                days += [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][Int(month - 1)]
            }
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, written independently of the parser (civil-from-days by repeated subtraction).
    static func format(_ milliseconds: Int64) -> String {
        var days = milliseconds >= 0 ? milliseconds / 86_400_000 : (milliseconds - 86_399_999) / 86_400_000
        let ofDay = milliseconds - days * 86_400_000
        var year: Int64 = 1970
        func isLeap(_ y: Int64) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }
        // Whole 400-year cycles first (146,097 days each), then years, then months.
        year += 400 * (days >= 0 ? days / 146_097 : (days - 146_096) / 146_097)
        days -= (year - 1970) / 400 * 146_097
        while days >= (isLeap(year) ? 366 : 365) {
            days -= isLeap(year) ? 366 : 365
            year += 1
        }
        var month = 1
        let lengths: [Int64] = [31, isLeap(year) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        while days >= lengths[month - 1] {
            days -= lengths[month - 1]
            month += 1
        }
        func pad(_ value: Int64, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(year, 4))-\(pad(Int64(month), 2))-\(pad(days + 1, 2))T\(pad(ofDay / 3_600_000, 2)):\(pad(ofDay / 60_000 % 60, 2)):"
            + "\(pad(ofDay / 1000 % 60, 2)).\(pad(ofDay % 1000, 3))Z"
    }
}

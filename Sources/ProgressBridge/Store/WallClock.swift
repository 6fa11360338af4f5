import Foundation

/// Wall-clock time in Unix milliseconds — the unit of the contract's timestamps, of `ts` in messages and
/// of retention cutoffs. One reading for all, so comparisons between them stay consistent.
enum WallClock {
    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}

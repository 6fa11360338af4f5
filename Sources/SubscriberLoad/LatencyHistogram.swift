/// A fixed-bucket log-linear histogram of non-negative integers (latencies in milliseconds): recording is an index
/// computation and an increment, merging is adding arrays, and percentiles are within 0.4 % of the exact value.
///
/// Values below 256 have a bucket each (exact). Above, every power of two is split into 128 equal buckets, so a
/// bucket is at most 1/128 of its lower bound wide and its midpoint, which `percentile` reports, is within 1/256 of
/// any value in it. Values beyond `maxTrackable` (about 35 years in milliseconds) land in the last bucket; `max`
/// stays exact.
public struct LatencyHistogram: Sendable, Equatable {
    /// Values below this have a bucket of their own.
    static let exactLimit: Int64 = 256
    /// Buckets per power of two above `exactLimit`.
    static let subBuckets: Int64 = 128
    /// log2(subBuckets).
    static let subBucketBits = 7
    /// The largest power of two covered; larger values count in the last bucket.
    static let topPower = 40
    /// The largest value given its own bucket.
    public static let maxTrackable: Int64 = (1 << topPower) - 1
    static let bucketCount = Int(exactLimit) + (topPower - 8) * Int(subBuckets)

    private var counts: [UInt64]
    /// Values recorded.
    public private(set) var count: UInt64 = 0
    /// The smallest value recorded (`Int64.max` while empty).
    public private(set) var min: Int64 = .max
    /// The largest value recorded (0 while empty).
    public private(set) var max: Int64 = 0
    /// The sum of the values recorded (for the mean), saturating.
    public private(set) var sum: UInt64 = 0

    /// An empty histogram.
    public init() {
        counts = Array(repeating: 0, count: Self.bucketCount)
    }

    /// Whether nothing was recorded.
    public var isEmpty: Bool { count == 0 }

    /// The mean of the values recorded, `nil` while empty.
    public var mean: Double? { count == 0 ? nil : Double(sum) / Double(count) }

    /// Records one value; negative values count as 0 (the caller counts clock skew separately).
    public mutating func record(_ value: Int64) {
        let value = Swift.max(0, value)
        counts[Self.bucketIndex(value)] &+= 1
        count &+= 1
        sum = sum.addingReportingOverflow(UInt64(value)).overflow ? .max : sum &+ UInt64(value)
        if value < min { min = value }
        if value > max { max = value }
    }

    /// Adds everything `other` recorded.
    public mutating func merge(_ other: LatencyHistogram) {
        guard other.count > 0 else { return }
        for i in counts.indices { counts[i] &+= other.counts[i] }
        count &+= other.count
        sum = sum.addingReportingOverflow(other.sum).overflow ? .max : sum &+ other.sum
        min = Swift.min(min, other.min)
        max = Swift.max(max, other.max)
    }

    /// Forgets everything recorded, keeping the storage.
    public mutating func reset() {
        for i in counts.indices { counts[i] = 0 }
        count = 0
        min = .max
        max = 0
        sum = 0
    }

    /// The nearest-rank percentile (`percent` in 0…100): the value whose rank is ⌈percent/100 × count⌉ (at least 1),
    /// as its bucket's midpoint clamped to [`min`, `max`] (`max` itself for the last bucket, which also holds
    /// everything beyond `maxTrackable`); `nil` while empty.
    public func percentile(_ percent: Double) -> Int64? {
        guard count > 0 else { return nil }
        let wanted = Swift.max(1, UInt64((Double(count) * Swift.min(Swift.max(percent, 0), 100) / 100).rounded(.up)))
        var seen: UInt64 = 0
        for (index, bucketCount) in counts.enumerated() where bucketCount > 0 {
            seen &+= bucketCount
            if seen >= wanted {
                // The last bucket also holds everything beyond `maxTrackable`: only `max` is known of those.
                if index == Self.bucketCount - 1 { return max }
                return Swift.min(Swift.max(Self.representative(ofBucket: index), min), max)
            }
        }
        return max
    }

    /// The bucket of a non-negative value.
    static func bucketIndex(_ value: Int64) -> Int {
        if value < exactLimit { return Int(value) }
        let value = Swift.min(value, maxTrackable)
        // Shift so that the value's top 8 bits remain: 128…255, i.e. 128 sub-buckets of this power of two.
        let shift = (63 - value.leadingZeroBitCount) - subBucketBits
        return Int(exactLimit) + (shift - 1) * Int(subBuckets) + Int((value >> shift) - subBuckets)
    }

    /// The midpoint of a bucket (its value, for an exact one).
    static func representative(ofBucket index: Int) -> Int64 {
        if index < Int(exactLimit) { return Int64(index) }
        let offset = index - Int(exactLimit)
        let shift = offset / Int(subBuckets) + 1
        let lower = (Int64(offset % Int(subBuckets)) + subBuckets) << shift
        return lower + (Int64(1) << shift) / 2
    }
}

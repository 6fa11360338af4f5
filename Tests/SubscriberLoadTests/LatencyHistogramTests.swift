import Testing

@testable import SubscriberLoad

@Suite("LatencyHistogram")
struct LatencyHistogramTests {
    static let percents: [Double] = [0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100]

    /// The nearest-rank percentile of sorted values: rank ⌈p/100 × n⌉, at least 1.
    static func reference(_ sorted: [Int64], _ percent: Double) -> Int64 {
        let rank = max(1, Int((Double(sorted.count) * percent / 100).rounded(.up)))
        return sorted[rank - 1]
    }

    static func check(_ values: [Int64]) {
        var histogram = LatencyHistogram()
        for value in values { histogram.record(value) }
        let sorted = values.sorted()
        for percent in percents {
            let expected = reference(sorted, percent)
            guard let actual = histogram.percentile(percent) else {
                Issue.record("no percentile")
                return
            }
            if expected < LatencyHistogram.exactLimit {
                #expect(actual == expected, "p\(percent)")
            } else {
                #expect(abs(Double(actual - expected)) <= Double(expected) * 0.01, "p\(percent): \(actual) vs \(expected)")
            }
        }
        #expect(histogram.count == UInt64(values.count))
        #expect(histogram.min == sorted.first)
        #expect(histogram.max == sorted.last)
    }

    @Test("small latencies are exact")
    func exact() {
        Self.check((0..<10_000).map { _ in Int64.random(in: 0..<256) })
    }

    @Test("log-uniform latencies within 1 % of the sorted-array reference")
    func logUniform() {
        Self.check((0..<50_000).map { _ in Int64(pow2(Double.random(in: 0..<30))) })
    }

    @Test("a long tail: mostly a few ms, some seconds")
    func longTail() {
        Self.check((0..<20_000).map { i in i % 100 == 0 ? Int64.random(in: 1_000...60_000) : Int64.random(in: 1...8) })
    }

    @Test("few values, ties, one value")
    func fewValues() {
        Self.check([5])
        Self.check([300, 300, 300])
        Self.check([1, 1_000_000])
        Self.check([0, 0, 0, 7_000])
    }

    @Test("every bucket's midpoint lies within 1/256 of all its values")
    func bucketBounds() {
        var value: Int64 = 0
        while value < 1 << 36 {
            let index = LatencyHistogram.bucketIndex(value)
            let representative = LatencyHistogram.representative(ofBucket: index)
            #expect(abs(Double(representative - value)) <= Double(value) / 256 + 0.5, "value \(value)")
            #expect(LatencyHistogram.bucketIndex(value + 1) >= index)
            value = value < 1024 ? value + 1 : value + value / 97
        }
        #expect(LatencyHistogram.bucketIndex(LatencyHistogram.maxTrackable) == LatencyHistogram.bucketCount - 1)
        #expect(LatencyHistogram.bucketIndex(.max) == LatencyHistogram.bucketCount - 1)
    }

    @Test("merging equals recording everything in one")
    func merge() {
        let values = (0..<9_000).map { _ in Int64.random(in: 0...100_000) }
        var whole = LatencyHistogram()
        var parts = [LatencyHistogram(), LatencyHistogram(), LatencyHistogram()]
        for (i, value) in values.enumerated() {
            whole.record(value)
            parts[i % 3].record(value)
        }
        var merged = LatencyHistogram()
        for part in parts { merged.merge(part) }
        #expect(merged == whole)
        merged.merge(LatencyHistogram())
        #expect(merged == whole)
    }

    @Test("empty, negative, huge, reset")
    func edges() {
        var histogram = LatencyHistogram()
        #expect(histogram.percentile(50) == nil)
        #expect(histogram.mean == nil)
        histogram.record(-20)
        #expect(histogram.percentile(50) == 0)
        histogram.record(.max)
        #expect(histogram.max == .max)
        #expect(histogram.percentile(100) == .max)
        histogram.reset()
        #expect(histogram.isEmpty)
        #expect(histogram == LatencyHistogram())
        histogram.record(4)
        histogram.record(6)
        #expect(histogram.mean == 5)
    }

    @Test("the summary reads the histogram")
    func summary() throws {
        var histogram = LatencyHistogram()
        #expect(LatencySummary(histogram) == nil)
        for value in 1...1000 { histogram.record(Int64(value)) }
        let summary = try #require(LatencySummary(histogram))
        #expect(summary.samples == 1000)
        #expect(summary.min == 1)
        #expect(summary.max == 1000)
        #expect(abs(Double(summary.p50 - 500)) <= 5)
        #expect(abs(Double(summary.p90 - 900)) <= 9)
        #expect(abs(Double(summary.p99 - 990)) <= 10)
    }
}

/// 2^exponent, with the fractional part interpolated linearly: log-like enough for test data.
private func pow2(_ exponent: Double) -> Double {
    var result = 1.0
    var remaining = exponent
    while remaining >= 1 {
        result *= 2
        remaining -= 1
    }
    return result * (1 + remaining)
}

import Foundation
import PropertyBased
import ProgressContract
import Testing

@testable import ProgressAggregation

/// The tally a job keeps of its videos answers what walking and sorting all of them would.
@Suite("Video tally")
struct VideoTallyTests {
    /// Random inserts and removes (many repeats, enough to split chunks many times) against a sorted array.
    @Test(arguments: [0, 1, 2, 3] as [UInt64], [4, 60, 5_000] as [Int64])
    func theMultisetAgreesWithASortedArray(seed: UInt64, spread: Int64) {
        var rng = Xoshiro(seed: (seed, ~seed, 0x9E37_79B9_7F4A_7C15, seed &+ 7))
        var set = SortedMultiset()
        var model: [Int64] = []
        for step in 0..<6_000 {
            let value = Int64.random(in: -spread...spread, using: &rng)
            // Mostly inserts at first, then mostly removes: it grows past many chunks and shrinks back.
            if Int.random(in: 0..<10, using: &rng) < (step < 3_000 ? 8 : 3) {
                set.insert(value)
                model.insert(value, at: model.firstIndex { $0 > value } ?? model.count)
            } else {
                let removed = set.remove(value)
                if let i = model.firstIndex(of: value) {
                    model.remove(at: i)
                    #expect(removed)
                } else {
                    #expect(!removed)
                }
            }
            if step % 250 == 0 || step == 5_999 {
                #expect(set.elements == model)
                #expect(set.count == model.count)
                for probe in [-spread - 1, -spread, 0, spread / 2, spread, spread + 1] {
                    #expect(set.count(atMost: probe) == model.filter { $0 <= probe }.count)
                }
                for index in [0, model.count / 2, model.count - 1] where model.indices.contains(index) {
                    #expect(set.element(at: index) == model[index])
                }
            }
        }
        #expect(model.count > 0, "the run must end with something to compare")
    }

    /// The tally counts each state at its own place: one place per state, in `allCases` order.
    @Test func eachStateHasItsOwnPlace() {
        #expect(VideoState.allCases.map(\.tallyIndex) == Array(VideoState.allCases.indices))
    }

    /// However elements come and go, chunks stay at least a quarter full: a producer moving videos' times about cannot
    /// leave thousands of tiny chunks for every question to walk.
    @Test func chunksNeverFragment() {
        var set = SortedMultiset()
        var held: [Int64] = []
        // Grow past many chunks, then keep one value in 300 (anchors in every chunk), then move values about.
        for value in 0..<20_000 as Range<Int64> {
            set.insert(value)
            held.append(value)
        }
        for value in held where value % 300 != 0 { set.remove(value) }
        held = held.filter { $0 % 300 == 0 }
        #expect(set.count == held.count)
        #expect(set.chunkCount <= set.count / 128 + 1, "\(set.chunkCount) chunks for \(set.count) elements")
        for round in 0..<40 {
            for i in 0..<600 { set.insert(Int64(100_000 + round * 1_000 + i)) }
            for i in 0..<598 { set.remove(Int64(100_000 + round * 1_000 + i)) }
            #expect(set.chunkCount <= set.count / 128 + 1, "round \(round): \(set.chunkCount) chunks for \(set.count) elements")
        }
        #expect(set.elements == (held + (0..<40).flatMap { round in [598, 599].map { Int64(100_000 + round * 1_000 + $0) } }).sorted())
    }

    /// For random streams in random orders, the progress computed from the tally is the one computed from the
    /// videos themselves — with a window of event time short enough that its edges matter.
    @Test func progressFromTheTallyIsProgressFromTheVideos() async {
        let policy = ProgressPolicy(throughputWindowMs: 10)
        await propertyCheck(
            count: 400, input: AggregationPropertyTests.specs, Gen.int(in: 0...3), Gen.uint64(in: 0 ... UInt64.max)
        ) { specs, terminal, seed in
            // terminal 3: no terminal event, so the window ends at the latest event, not the job's end.
            var events = AggregationPropertyTests.stream(specs, terminal: min(terminal, 2))
            if terminal == 3 { events.removeLast() }
            var job = aggregate(AggregationPropertyTests.shuffled(events, seed: seed))
            Self.expectProgressMatchesVideos(job, policy: policy)
            // Restored from its state records (the tally rebuilt from the videos): the same.
            let encoder = JSONEncoderForTests()
            var restored = try! encoder.roundTrip(job.withoutVideos())
            restored.restore(videos: job.videos.values.map { try! encoder.roundTrip($0) }, limits: .init())
            #expect(restored.progress(policy: policy) == job.progress(policy: policy))
            // And it keeps counting from there.
            var f = EventFactory()
            for (i, event) in [f.completed("v_more", at: 41, ms: 7), f.failed("v0", at: 42), f.processing("v1", at: 43)].enumerated() {
                let again = ProgressEvent(eventId: "evt_more_\(i)", type: event.type, jobId: event.jobId, occurredAt: event.occurredAt, seq: nil, payload: event.payload)
                #expect(job.apply(again) == .applied)
                #expect(restored.apply(again) == .applied)
            }
            Self.expectProgressMatchesVideos(job, policy: policy)
            #expect(restored.progress(policy: policy) == job.progress(policy: policy))
        }
    }

    /// What `progress()` used to compute by walking every video: throughput, processing times, counts.
    static func expectProgressMatchesVideos(_ job: JobAggregate, policy: ProgressPolicy) {
        let p = job.progress(policy: policy)
        let videos = Array(job.videos.values)
        for state in [VideoState.pending, .processing, .completed, .failed, .skipped, .canceled] {
            #expect(job.count(state) == videos.filter { $0.state == state }.count, "\(state)")
        }
        let samples = videos.compactMap { $0.state == .completed ? $0.processingMs : nil }.sorted()
        if samples.isEmpty {
            #expect(p.processingTime == nil)
        } else {
            func percentile(_ q: Double) -> Int64 {
                samples[max(0, min(samples.count - 1, Int((q * Double(samples.count)).rounded(.up)) - 1))]
            }
            // The mean of the exact sum (a `Double` sum of such values loses their low digits).
            let mean = samples.reduce(Decimal(0)) { $0 + Decimal($1) } / Decimal(samples.count)
            let got = p.processingTime
            #expect(got?.samples == samples.count && got?.p50 == percentile(0.5) && got?.p95 == percentile(0.95))
            let error = abs(Decimal(got?.mean ?? .nan) - mean)
            #expect(error <= mean * Decimal(1e-15), "mean \(String(describing: got?.mean)) against \(mean)")
        }
        let start = job.startedAt ?? job.details.createdAt ?? job.firstEventAt
        let end = job.finishedAt ?? job.lastEventAt
        let windowStart = max(start, end.subtracting(saturating: policy.throughputWindowMs))
        let windowMs = end.subtracting(saturating: windowStart)
        if p.countsFromMonitor || windowMs <= 0 {
            #expect(p.throughputPerMinute == nil)
        } else {
            let recent = videos.filter { $0.state.isTerminal && $0.updatedAt > windowStart && $0.updatedAt <= end }.count
            let perMinute = Double(recent) / (Double(windowMs) / 60_000)
            #expect(p.throughputPerMinute == (perMinute * 100).rounded() / 100)
        }
    }
}


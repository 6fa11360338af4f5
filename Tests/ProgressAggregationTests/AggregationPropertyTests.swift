import PropertyBased
import ProgressAggregation
import ProgressContract
import Testing

/// Random streams of one job, with extreme values and colliding event times, in random arrival orders.
@Suite("Aggregation properties")
struct AggregationPropertyTests {
    /// The extremes a producer can send (and a few beyond what the schemas allow, as a corrupt state record might hold).
    static let extremes: [Int64] = [0, 1, 2, 999, 9_007_199_254_740_991, Int64(Int32.max), Int64.max - 1, Int64.max]

    /// One event of a random stream, before it is turned into a `ProgressEvent`.
    struct Spec: Sendable {
        let kind: Int
        let video: Int
        let at: Int64
        let number: Int64
        let flag: Bool
        let text: Int
    }

    static let specs = zip(
        Gen.int(in: 0...6), Gen.int(in: 0...5), Gen.int64(in: 0...40), Gen.int(in: 0..<extremes.count), Gen.bool, Gen.int(in: 0...3)
    ).map { kind, video, at, number, flag, text in Spec(kind: kind, video: video, at: at, number: extremes[number], flag: flag, text: text) }
        .array(of: 1...40)

    /// A stream that is valid for the job state machine: pending → running first, a terminal event last (by event time).
    static func stream(_ specs: [Spec], terminal: Int) -> [ProgressEvent] {
        var f = EventFactory()
        var events = f.start(total: 6)
        let texts: [String?] = [nil, "a", "b", "a much longer title"]
        for s in specs {
            let video = "v\(s.video)"
            let payload: EventPayload
            switch s.kind {
            case 0: payload = .videoCreated(videoId: video, rowIndex: s.flag ? Int(clamping: s.number) : nil, title: texts[s.text])
            case 1:
                payload = .videoUpdated(
                    videoId: video, state: s.flag ? .processing : .skipped, progressPercent: s.text == 0 ? nil : Double(s.text) * 25,
                    stage: texts[s.text], attempt: s.flag ? Int(clamping: s.number) : nil)
            case 2: payload = .videoCompleted(videoId: video, processingMs: s.number, outputURL: texts[s.text], attempt: nil)
            case 3:
                payload = .videoFailed(
                    videoId: video, error: ErrorInfo(code: "E\(s.text)", message: texts[s.text] ?? ""), retryable: s.flag, attempt: nil,
                    processingMs: s.flag ? s.number : nil)
            case 4:
                let n = Int(clamping: s.number)
                payload = .jobProgress(MonitorCounts(totalVideos: n, completed: n, failed: n, skipped: s.flag ? n : nil, processing: n))
            case 5:
                var details = JobDetails()
                details.title = texts[s.text]
                details.totalVideos = s.flag ? Int(clamping: s.number) : nil
                details.processingDeadlineMs = s.flag ? nil : max(1, s.number)
                payload = .jobStateChanged(from: nil, to: .running, reason: nil, job: details)
            default: payload = .videoUpdated(videoId: video, state: .processing, progressPercent: nil, stage: nil, attempt: nil)
            }
            events.append(f.make(payload, at: s.at))
        }
        let end = (specs.map(\.at).max() ?? 0) + 1
        let last: EventPayload =
            switch terminal {
            case 0: .jobCompleted(summary: nil)
            case 1: .jobFailed(error: ErrorInfo(code: "X", message: "gave up"))
            default: .jobCanceled(reason: nil, canceledBy: nil)
            }
        events.append(f.make(last, at: end))
        return events
    }

    /// Applies `events` in the order given by `seed` (a permutation).
    static func shuffled(_ events: [ProgressEvent], seed: UInt64) -> [ProgressEvent] {
        // PropertyBased's own generator, seeded from the drawn value: a shuffle is reproducible from its seed.
        var rng = Xoshiro(seed: (seed, ~seed, seed &* 0x9E37_79B9_7F4A_7C15, 1))
        return events.shuffled(using: &rng)
    }

    @Test func extremeValuesNeverTrap() async {
        await propertyCheck(count: 300, input: Self.specs, Gen.int(in: 0...2)) { specs, terminal in
            let job = aggregate(Self.stream(specs, terminal: terminal))
            let p = job.progress()
            #expect(p.percentComplete >= 0 && p.percentComplete <= 100)
            #expect(p.pending >= 0 && p.elapsedMs >= 0)
            if let mean = p.processingTime?.mean { #expect(mean.isFinite && mean >= 0) }
            _ = p.json.serialized()
        }
    }

    @Test func anyArrivalOrderGivesTheInOrderAggregate() async {
        await propertyCheck(count: 300, input: Self.specs, Gen.int(in: 0...2), Gen.uint64(in: 0 ... UInt64.max)) { specs, terminal, seed in
            let events = Self.stream(specs, terminal: terminal)
            let inOrder = aggregate(events)
            let any = aggregate(Self.shuffled(events, seed: seed))
            #expect(any.progress() == inOrder.progress())
            #expect(any.videos == inOrder.videos)
            #expect(any.details == inOrder.details)
        }
    }

    /// What `applyAndView` tells of an applied video event is what a look-up afterwards finds; nothing for job events,
    /// duplicates and refused events (an impossible transition, videos past the job's cap); and it applies exactly
    /// what `apply` does.
    @Test func applyAndViewTellsWhatTheVideoShowsNow() async {
        await propertyCheck(count: 300, input: Self.specs, Gen.int(in: 0...2), Gen.uint64(in: 0 ... UInt64.max)) { specs, terminal, seed in
            var events = Self.stream(specs, terminal: terminal)
            var f = EventFactory()
            let impossible = f.make(.jobStateChanged(from: .completed, to: .running, reason: nil, job: nil), at: 20, id: "impossible")
            events = Self.shuffled(events + [impossible], seed: seed)
            // Up to 6 videos in the stream, at most 2 in the job: later videos' events are refused.
            let limits = AggregateLimits(maxVideos: 2)
            var viewed: JobAggregate?
            var plain: JobAggregate?
            var refused = 0
            for event in events + events.prefix(3) {
                if viewed == nil {
                    viewed = JobAggregate(jobId: event.jobId, firstEventAt: event.occurredAt, limits: limits)
                    plain = viewed
                }
                let (outcome, view) = viewed!.applyAndView(event)
                #expect(outcome == plain!.apply(event))
                #expect(viewed!.isTerminal == (viewed!.state?.isTerminal ?? false), "\(event.type), \(outcome)")
                if case .applied = outcome, let id = event.payload.videoId {
                    #expect(view != nil && view == viewed!.view(ofVideo: id), "\(event.type)")
                } else {
                    #expect(view == nil, "\(event.type), \(outcome)")
                    if case .rejected = outcome { refused += 1 }
                }
            }
            #expect(refused >= 1, "the impossible transition at least is refused")
            #expect(viewed!.videos.count <= 2)
            #expect(viewed!.videos == plain!.videos && viewed!.progress() == plain!.progress())
        }
    }

    @Test func applyingEverythingTwiceChangesNothing() async {
        await propertyCheck(count: 200, input: Self.specs, Gen.uint64(in: 0 ... UInt64.max)) { specs, seed in
            let events = Self.stream(specs, terminal: 0)
            let once = aggregate(events)
            var twice = once
            for event in Self.shuffled(events, seed: seed) { #expect(twice.apply(event) == .duplicate) }
            #expect(twice.progress() == once.progress())
        }
    }

    @Test func stateRecordsRoundTripAnyAggregate() async throws {
        await propertyCheck(count: 100, input: Self.specs, Gen.int(in: 0...2)) { specs, terminal in
            let job = aggregate(Self.stream(specs, terminal: terminal))
            let encoder = JSONEncoderForTests()
            var restored = try! encoder.roundTrip(job.withoutVideos())
            let videos = job.videos.values.map { try! encoder.roundTrip($0) }
            restored.restore(videos: videos, limits: .init())
            #expect(restored.progress() == job.progress())
            #expect(restored.videos == job.videos)
            #expect(restored.isTerminal == job.isTerminal && job.isTerminal == (job.state?.isTerminal ?? false))
        }
    }

    @Test func videoCapRejectsOneMoreVideoAndNothingElse() {
        var f = EventFactory()
        var job = JobAggregate(jobId: f.jobId, firstEventAt: f.origin, limits: AggregateLimits(maxVideos: 2, maxEventIds: 3))
        for event in f.start(total: 3) { _ = job.apply(event) }
        #expect(job.apply(f.completed("v1", at: 1)) == .applied)
        #expect(job.apply(f.completed("v2", at: 2)) == .applied)
        guard case .rejected(let rejection) = job.apply(f.completed("v3", at: 3)) else {
            Issue.record("a third video must be refused")
            return
        }
        #expect(rejection.reason == .limitExceeded)
        #expect(job.apply(f.failed("v1", at: 4)) == .applied, "known videos still change")
        #expect(job.videos.count == 2)
    }
}

import Foundation

/// JSON round trips as the state topic does them.
struct JSONEncoderForTests {
    func roundTrip<T: Codable>(_ value: T) throws -> T {
        try JSONDecoder().decode(T.self, from: JSONEncoder().encode(value))
    }
}

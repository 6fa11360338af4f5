import ProgressAggregation
import ProgressContract
import Testing

/// Builds events of one job at chosen event times (ms from an origin).
struct EventFactory {
    let jobId = "job_test_1"
    let origin: Int64 = 1_795_515_330_000
    private(set) var counter = 0

    mutating func make(_ payload: EventPayload, at offsetMs: Int64, seq: Int64? = nil, id: String? = nil) -> ProgressEvent {
        counter += 1
        let type: EventType =
            switch payload {
            case .jobStateChanged: .jobStateChanged
            case .jobProgress: .jobProgress
            case .videoCreated: .videoCreated
            case .videoUpdated: .videoUpdated
            case .videoCompleted: .videoCompleted
            case .videoFailed: .videoFailed
            case .jobCompleted: .jobCompleted
            case .jobFailed: .jobFailed
            case .jobCanceled: .jobCanceled
            }
        return ProgressEvent(
            eventId: id ?? "evt_\(counter)", type: type, jobId: jobId, occurredAt: origin + offsetMs, seq: seq ?? Int64(counter), payload: payload)
    }

    mutating func start(total: Int, deadlineMs: Int64? = nil, at: Int64 = 0) -> [ProgressEvent] {
        var details = JobDetails()
        details.title = "Test job"
        details.totalVideos = total
        details.processingDeadlineMs = deadlineMs
        return [
            make(.jobStateChanged(from: nil, to: .pending, reason: nil, job: details), at: at),
            make(.jobStateChanged(from: .pending, to: .running, reason: nil, job: nil), at: at),
        ]
    }

    mutating func completed(_ video: String, at: Int64, ms: Int64 = 1000) -> ProgressEvent {
        make(.videoCompleted(videoId: video, processingMs: ms, outputURL: nil, attempt: 1), at: at)
    }

    mutating func failed(_ video: String, at: Int64) -> ProgressEvent {
        make(.videoFailed(videoId: video, error: ErrorInfo(code: "E", message: "boom"), retryable: false, attempt: 1, processingMs: nil), at: at)
    }

    mutating func processing(_ video: String, at: Int64, percent: Double = 10) -> ProgressEvent {
        make(.videoUpdated(videoId: video, state: .processing, progressPercent: percent, stage: "render", attempt: 1), at: at)
    }
}

func aggregate(_ events: [ProgressEvent]) -> JobAggregate {
    var job = JobAggregate(jobId: events[0].jobId, firstEventAt: events[0].occurredAt)
    for event in events { _ = job.apply(event) }
    return job
}

@Suite("Job aggregation")
struct JobAggregateTests {
    @Test func countsPercentAndSuccessRate() {
        var f = EventFactory()
        var events = f.start(total: 10)
        events += [f.completed("v1", at: 1000), f.completed("v2", at: 2000), f.completed("v3", at: 3000), f.failed("v4", at: 4000)]
        events += [f.processing("v5", at: 4500), f.make(.videoUpdated(videoId: "v6", state: .skipped, progressPercent: nil, stage: nil, attempt: nil), at: 4600)]
        let p = aggregate(events).progress()
        #expect(p.state == .running)
        #expect(p.totalVideos == 10)
        #expect((p.completed, p.failed, p.skipped, p.processing, p.canceled) == (3, 1, 1, 1, 0))
        #expect(p.pending == 4)  // 10 − 5 terminal − 1 processing
        #expect(p.percentComplete == 50)
        #expect(p.successRate == 0.75)
        #expect(p.title == "Test job")
    }

    @Test func successRateIsNullBeforeAnyOutcomeAndPercentZeroWithoutTotal() {
        var f = EventFactory()
        let p = aggregate([f.processing("v1", at: 0)]).progress()
        #expect(p.successRate == nil)
        #expect(p.totalVideos == nil)
        #expect(p.percentComplete == 0)
        #expect(p.pending == 0)
        #expect(p.processing == 1)
    }

    @Test func duplicatesAreAppliedOnce() {
        var f = EventFactory()
        var job = aggregate(f.start(total: 2))
        let done = f.completed("v1", at: 1000)
        #expect(job.apply(done) == .applied)
        #expect(job.apply(done) == .duplicate)
        #expect(job.progress().completed == 1)
        #expect(job.eventsApplied == 3)
    }

    /// The latest `maxEventIds` ids are recognised, the older ones not, the same by a job restored from its record —
    /// with the window wrapped round more than once, and after the restore moves on.
    @Test func exactlyTheLatestEventIdsAreRecognisedLiveAndRestored() throws {
        var f = EventFactory()
        let limits = AggregateLimits(maxEventIds: 5)
        var job = JobAggregate(jobId: f.jobId, firstEventAt: f.origin, limits: limits)
        let events = (0..<13).map { f.processing("v\($0)", at: Int64($0), percent: 1) }
        for event in events { #expect(job.apply(event) == .applied) }
        var restored = try JSONEncoderForTests().roundTrip(job)
        restored.restore(videos: [], limits: limits)
        for var copy in [job, restored] {
            for event in events[8...] {
                var again = copy
                #expect(again.apply(event) == .duplicate)
            }
            for event in events[..<8] {
                var again = copy
                #expect(again.apply(event) == .applied)
            }
            // One more event forgets the oldest remembered (the 9th), and no other.
            #expect(copy.apply(f.processing("v13", at: 13, percent: 1)) == .applied)
            var again = copy
            #expect(again.apply(events[8]) == .applied)
            for event in events[9...] {
                var again = copy
                #expect(again.apply(event) == .duplicate)
            }
        }
    }

    @Test func eventsBeforeVideoCreatedStillCount() {
        var f = EventFactory()
        var events = f.start(total: 2)
        events.append(f.completed("v1", at: 1000))
        events.append(f.make(.videoCreated(videoId: "v1", rowIndex: 7, title: "First"), at: 500))
        let job = aggregate(events)
        #expect(job.videos["v1"]?.state == .completed)
        #expect(job.videos["v1"]?.title == "First")
        #expect(job.videos["v1"]?.rowIndex == 7)
        #expect(job.progress().completed == 1)
    }

    @Test func anOlderUpdateArrivingLateDoesNotUndoCompletion() {
        var f = EventFactory()
        var events = f.start(total: 1)
        let processing = f.processing("v1", at: 1000, percent: 40)
        let done = f.completed("v1", at: 2000)
        events += [done, processing]  // arrives out of order
        let job = aggregate(events)
        #expect(job.videos["v1"]?.state == .completed)
        #expect(job.videos["v1"]?.progressPercent == 100)
        #expect(job.progress().processing == 0)
    }

    @Test func retryAfterFailureIsFollowed() {
        var f = EventFactory()
        var events = f.start(total: 1)
        events += [f.failed("v1", at: 1000), f.processing("v1", at: 2000), f.completed("v1", at: 3000)]
        let p = aggregate(events).progress()
        #expect((p.completed, p.failed) == (1, 0))
    }

    @Test func anyArrivalOrderGivesTheSameAggregate() {
        var f = EventFactory()
        var events = f.start(total: 20, deadlineMs: 600_000)
        for i in 0..<20 {
            events.append(f.make(.videoCreated(videoId: "v\(i)", rowIndex: i, title: nil), at: 100))
            events.append(f.processing("v\(i)", at: Int64(1000 + i * 500)))
            events.append(i % 7 == 3 ? f.failed("v\(i)", at: Int64(5000 + i * 3000)) : f.completed("v\(i)", at: Int64(5000 + i * 3000), ms: Int64(900 + i * 10)))
        }
        events.append(f.make(.jobProgress(MonitorCounts(totalVideos: 20, completed: 17, failed: 3)), at: 70_000))
        events.append(f.make(.jobCompleted(summary: nil), at: 80_000))
        let reference = aggregate(events).progress()
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<25 {
            var shuffled = events.shuffled(using: &rng)
            // Put a starting event first only to pick the same aggregate origin; order otherwise random.
            shuffled.append(contentsOf: shuffled.prefix(5))  // and redeliver some
            #expect(aggregate(shuffled).progress() == reference)
        }
        #expect(reference.state == .completed)
        #expect((reference.completed, reference.failed) == (17, 3))
        #expect(reference.percentComplete == 100)
    }

    @Test func throughputEtaAndDeadlineFromEventTime() {
        var f = EventFactory()
        var events = f.start(total: 10, deadlineMs: 240_000)
        // 4 videos done within the first 2 minutes → 2 per minute; 6 remain → 180 s.
        events += [f.completed("v1", at: 30_000), f.completed("v2", at: 60_000), f.completed("v3", at: 90_000), f.completed("v4", at: 120_000)]
        let p = aggregate(events).progress()
        #expect(p.elapsedMs == 120_000)
        #expect(p.throughputPerMinute == 2)
        #expect(p.etaSeconds == 180)
        #expect(p.deadlineAtRisk)  // 120 s elapsed + 180 s to go > 240 s
        #expect(p.processingTime?.p50 == 1000)

        var relaxed = EventFactory()
        var later = relaxed.start(total: 10, deadlineMs: 600_000)
        later += [relaxed.completed("v1", at: 30_000), relaxed.completed("v2", at: 60_000)]
        #expect(!aggregate(later).progress().deadlineAtRisk)
    }

    @Test func processingTimePercentiles() {
        var f = EventFactory()
        var events = f.start(total: 20)
        for i in 1...20 { events.append(f.completed("v\(i)", at: Int64(i * 1000), ms: Int64(i * 100))) }
        let times = aggregate(events).progress().processingTime
        #expect(times?.samples == 20)
        #expect(times?.mean == 1050)
        #expect(times?.p50 == 1000)
        #expect(times?.p95 == 1900)
    }

    @Test func monitorCountsStandInWhenNoVideoEventsArrive() {
        var f = EventFactory()
        var events = f.start(total: 10)
        events.append(f.make(.jobProgress(MonitorCounts(totalVideos: 10, completed: 4, failed: 1, processing: 2)), at: 1000))
        let p = aggregate(events).progress()
        #expect(p.countsFromMonitor)
        #expect((p.completed, p.failed, p.processing, p.pending) == (4, 1, 2, 3))
        #expect(p.percentComplete == 50)
    }

    @Test func forbiddenTransitionsAreRejected() {
        var f = EventFactory()
        var job = aggregate(f.start(total: 1))
        let bad = f.make(.jobStateChanged(from: .pending, to: .completed, reason: nil, job: nil), at: 500)
        guard case .rejected(let r) = job.apply(bad) else {
            Issue.record("accepted pending → completed")
            return
        }
        #expect(r.reason == .invalidTransition)
        #expect(job.apply(f.make(.jobCompleted(summary: nil), at: 1000)) == .applied)
        guard case .rejected(let again) = job.apply(f.make(.jobStateChanged(from: nil, to: .running, reason: nil, job: nil), at: 2000)) else {
            Issue.record("accepted leaving a terminal state")
            return
        }
        #expect(again.reason == .invalidTransition)
        #expect(job.state == .completed)
    }

    @Test func failedJobKeepsItsError() {
        var f = EventFactory()
        var events = f.start(total: 3)
        events.append(f.make(.jobFailed(error: ErrorInfo(code: "QUOTA", message: "quota exceeded")), at: 5000))
        let p = aggregate(events).progress()
        #expect(p.state == .failed)
        #expect(p.error?.code == "QUOTA")
        #expect(p.etaSeconds == nil)
        #expect(!p.deadlineAtRisk)
    }
}

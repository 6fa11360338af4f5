import ProgressAggregation
import ProgressContract
import Testing

/// What a copy of a job's progress or of a video's view holds counts every byte of every string in it (the resume
/// history bounds its memory by it): compared with every string reflection finds, so that a field added later
/// cannot be left out of the count.
@Suite("String bytes of copies")
struct StringBytesTests {
    /// Every `String` reachable from `value` through stored properties and optionals, by reflection.
    static func reflectedStringBytes(_ value: Any) -> Int {
        if let text = value as? String { return text.utf8.count }
        return Mirror(reflecting: value).children.reduce(0) { $0 + reflectedStringBytes($1.value) }
    }

    static func event(_ payload: EventPayload, _ type: EventType, _ n: Int) -> ProgressEvent {
        ProgressEvent(eventId: "job_strings-\(n)", type: type, jobId: "job_strings", occurredAt: 1_795_515_330_000 + Int64(n), seq: Int64(n), payload: payload)
    }

    @Test func aJobsProgressCountsEveryString() {
        var details = JobDetails()
        details.title = String(repeating: "t", count: 1_001)
        details.priority = String(repeating: "p", count: 1_002)
        details.sheetId = String(repeating: "s", count: 1_003)
        details.sheetRange = String(repeating: "r", count: 1_004)
        var aggregate = JobAggregate(jobId: "job_strings", firstEventAt: 1_795_515_330_000)
        #expect(aggregate.apply(Self.event(.jobStateChanged(from: nil, to: .running, reason: nil, job: details), .jobStateChanged, 1)) == .applied)
        #expect(aggregate.apply(Self.event(.jobFailed(error: ErrorInfo(code: String(repeating: "c", count: 1_005), message: String(repeating: "m", count: 1_006))), .jobFailed, 2)) == .applied)
        let progress = aggregate.progress()
        #expect(progress.stringBytes == Self.reflectedStringBytes(progress))
        #expect(progress.stringBytes >= 1_001 + 1_002 + 1_003 + 1_004 + 1_005 + 1_006)
    }

    @Test func aVideosViewCountsEveryString() throws {
        var aggregate = JobAggregate(jobId: "job_strings", firstEventAt: 1_795_515_330_000)
        let id = String(repeating: "v", count: 501)
        _ = aggregate.apply(Self.event(.videoCreated(videoId: id, rowIndex: 2, title: String(repeating: "t", count: 502)), .videoCreated, 1))
        _ = aggregate.apply(Self.event(.videoUpdated(videoId: id, state: .processing, progressPercent: 5, stage: String(repeating: "s", count: 503), attempt: 1), .videoUpdated, 2))
        _ = aggregate.apply(Self.event(.videoCompleted(videoId: id, processingMs: 9, outputURL: String(repeating: "u", count: 504), attempt: 1), .videoCompleted, 3))
        _ = aggregate.apply(
            Self.event(.videoFailed(videoId: id, error: ErrorInfo(code: String(repeating: "c", count: 505), message: String(repeating: "m", count: 506)), retryable: true, attempt: 2, processingMs: 9), .videoFailed, 4))
        let found = aggregate.view(ofVideo: id)
        let view = try #require(found)
        #expect(view.stringBytes == Self.reflectedStringBytes(view))
        #expect(view.stringBytes >= 501 + 502 + 503 + 504 + 505 + 506)
    }

    /// `VideoView.==` names its fields one by one (it is a class): views of a video at different moments are unequal,
    /// at the same moment equal, and the view has no field beyond the ones `==` names (listed here).
    @Test func videoViewsDifferingInAnyFieldAreUnequal() throws {
        let id = "v1"
        let events: [ProgressEvent] = [
            Self.event(.videoCreated(videoId: id, rowIndex: 2, title: "t"), .videoCreated, 1),
            Self.event(.videoUpdated(videoId: id, state: .processing, progressPercent: 5, stage: "s", attempt: 1), .videoUpdated, 2),
            Self.event(.videoCompleted(videoId: id, processingMs: 9, outputURL: "u", attempt: 1), .videoCompleted, 3),
            Self.event(.videoFailed(videoId: id, error: ErrorInfo(code: "c", message: "m"), retryable: true, attempt: 2, processingMs: 10), .videoFailed, 4),
        ]
        var aggregate = JobAggregate(jobId: "job_strings", firstEventAt: 1_795_515_330_000)
        var views: [VideoView] = []
        for event in events {
            _ = aggregate.apply(event)
            let found = aggregate.view(ofVideo: id)
            views.append(try #require(found))
        }
        // Each later view differs from the one before in some fields; the same video viewed again is equal.
        for (before, after) in zip(views, views.dropFirst()) { #expect(before != after) }
        let again = aggregate.view(ofVideo: id)
        #expect(views.last == again)
        let fields = Mirror(reflecting: views[0]).children.compactMap(\.label)
        #expect(
            fields == [
                "id", "jobId", "state", "progressPercent", "stage", "attempt", "processingMs", "error", "retryable", "outputURL", "title",
                "rowIndex", "updatedAt",
            ], "a field added to VideoView must be compared in its ==")
    }
}

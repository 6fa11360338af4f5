import ProgressContract

/// What applying one event did.
public enum ApplyOutcome: Sendable, Equatable {
    /// Applied; subscribers should hear of it.
    case applied
    /// The same `event_id` was applied before; nothing changed.
    case duplicate
    /// Not applied, for this reason (dead-letter it).
    case rejected(Rejection)
}

/// Bounds on what one job may hold, whatever its producer sends.
public struct AggregateLimits: Sendable, Hashable {
    /// Videos per job; an event about one more is rejected (`limit_exceeded`). Default 200,000.
    public var maxVideos: Int
    /// Event ids remembered for recognising duplicates; older ones are forgotten (their redeliveries are
    /// still harmless, because applying is idempotent). Default 2,000 — all of them are kept in the state topic, so a
    /// restored replica recognises exactly the duplicates a replica that read everything does.
    public var maxEventIds: Int

    public init(maxVideos: Int = 200_000, maxEventIds: Int = 2_000) {
        self.maxVideos = max(1, maxVideos)
        self.maxEventIds = max(1, maxEventIds)
    }
}

/// The aggregate of one job: a pure function of its events (content and `occurred_at` only).
///
/// Every field is "latest event that carried it wins" by `EventStamp`, each field on its own, and
/// counts are derived from the per-video states, so applying the same set of events in any order, or
/// twice, gives the same result. Duplicates by `event_id` are also recognised explicitly.
///
/// `Codable`, so the bridge can keep it in a changelog topic and restore it after a restart.
public struct JobAggregate: Sendable {
    public let jobId: String
    private var stateField = Stamped<JobState>()
    private var titleField = Stamped<String>()
    private var totalField = Stamped<Int>()
    private var deadlineField = Stamped<Int64>()
    private var createdAtField = Stamped<Int64>()
    private var priorityField = Stamped<String>()
    private var sheetIdField = Stamped<String>()
    private var sheetRangeField = Stamped<String>()
    private var monitorField = Stamped<MonitorCounts>()
    private var errorField = Stamped<ErrorInfo>()
    public private(set) var videos: [String: VideoProgress] = [:]
    /// What progress needs of the videos (counts by state, finish times, processing times), kept as they change.
    private(set) var tally = VideoTally()
    public private(set) var firstEventAt: Int64
    public private(set) var lastEventAt: Int64
    /// Event time of the earliest transition to `running`.
    public private(set) var startedAt: Int64?
    public private(set) var eventsApplied = 0
    /// Whether the job is in a terminal state (`state?.isTerminal`), kept as the state changes. Stored, so other modules
    /// read it in place: for the computed `state`, a call into this module, they copied the whole aggregate (~720 bytes,
    /// and a retain and release of every field) — ingest asked three times an event.
    public private(set) var isTerminal = false
    private var recentEventIds = RecentEventIds()
    /// Configuration, not state: never encoded.
    public private(set) var limits = AggregateLimits()

    /// Creates the empty aggregate of a job first seen at `firstEventAt`.
    public init(jobId: String, firstEventAt: Int64, limits: AggregateLimits = .init()) {
        self.jobId = jobId
        self.firstEventAt = firstEventAt
        self.lastEventAt = firstEventAt
        self.limits = limits
    }

    public var state: JobState? { stateField.value }
    public var monitorCounts: MonitorCounts? { monitorField.value }
    public var error: ErrorInfo? { errorField.value }
    /// Event time at which the job reached a terminal state.
    public var finishedAt: Int64? { isTerminal ? stateField.stamp?.occurredAt : nil }

    /// The job's details, each the latest that any event carried.
    public var details: JobDetails {
        var d = JobDetails()
        d.title = titleField.value
        d.totalVideos = totalField.value
        d.processingDeadlineMs = deadlineField.value
        d.createdAt = createdAtField.value
        d.priority = priorityField.value
        d.sheetId = sheetIdField.value
        d.sheetRange = sheetRangeField.value
        return d
    }

    /// Applies one event of this job.
    public mutating func apply(_ event: ProgressEvent) -> ApplyOutcome {
        var unused: VideoView?
        return apply(event, viewing: false, view: &unused)
    }

    /// Applies one event of this job and, when it changed a video, tells what that video's JSON shows now — what
    /// `view(ofVideo:)` would, without looking the video up a second time (ingest does this for every video event).
    public mutating func applyAndView(_ event: ProgressEvent) -> (ApplyOutcome, VideoView?) {
        var view: VideoView?
        let outcome = apply(event, viewing: true, view: &view)
        return (outcome, view)
    }

    private mutating func apply(_ event: ProgressEvent, viewing: Bool, view: inout VideoView?) -> ApplyOutcome {
        precondition(event.jobId == jobId, "event of another job")
        // Its id hashed once, for the look-up now and the remembering below.
        let eventId = RememberedEventId(event.eventId)
        guard !recentEventIds.contains(eventId) else { return .duplicate }
        let stamp = EventStamp(event)
        if case .rejected(let rejection) = checkTransition(event, stamp) {
            return .rejected(rejection)
        }
        if let id = event.payload.videoId, videos.count >= limits.maxVideos, videos[id] == nil {
            return .rejected(Rejection(.limitExceeded, "job \(jobId) already has \(videos.count) videos, the most one job may have (--max-videos-per-job)"))
        }
        recentEventIds.remember(eventId, limit: limits.maxEventIds)
        eventsApplied = eventsApplied.adding(saturating: 1)
        firstEventAt = min(firstEventAt, event.occurredAt)
        lastEventAt = max(lastEventAt, event.occurredAt)

        switch event.payload {
        case .jobStateChanged(_, let to, _, let job):
            if let job { mergeDetails(job, stamp) }
            setState(to, stamp)
        case .jobProgress(let counts):
            monitorField.offer(counts, stamp)
            totalField.offer(counts.totalVideos, stamp)
        case .videoCreated(let id, let rowIndex, let title):
            updateVideo(id, stamp, viewing: viewing, view: &view) { video in
                video.rowIndexField.offer(rowIndex, stamp)
                video.titleField.offer(title, stamp)
            }
        case .videoUpdated(let id, let videoState, let percent, let stage, let attempt):
            updateVideo(id, stamp, viewing: viewing, view: &view) { video in
                video.outcome.offer(.init(state: videoState), stamp)
                video.percent.offer(percent, stamp)
                video.stageField.offer(stage, stamp)
                video.attemptField.offer(attempt, stamp)
            }
        case .videoCompleted(let id, let processingMs, let outputURL, let attempt):
            updateVideo(id, stamp, viewing: viewing, view: &view) { video in
                video.outcome.offer(.init(state: .completed), stamp)
                video.percent.offer(100, stamp)
                video.processingField.offer(processingMs, stamp)
                video.outputField.offer(outputURL, stamp)
                video.attemptField.offer(attempt, stamp)
            }
        case .videoFailed(let id, let failure, let retryable, let attempt, let processingMs):
            updateVideo(id, stamp, viewing: viewing, view: &view) { video in
                video.outcome.offer(.init(state: .failed, error: failure, retryable: retryable), stamp)
                video.attemptField.offer(attempt, stamp)
                video.processingField.offer(processingMs, stamp)
            }
        case .jobCompleted(let summary):
            totalField.offer(summary?.totalVideos, stamp)
            setState(.completed, stamp)
        case .jobFailed(let failure):
            errorField.offer(failure, stamp)
            setState(.failed, stamp)
        case .jobCanceled:
            setState(.canceled, stamp)
        }
        return .applied
    }

    /// The job state machine, judged so that the verdict does not depend on arrival order for
    /// valid streams: an announced `from → to` must be allowed, and no event may move a job
    /// out of a terminal state it reached earlier (by event time).
    private func checkTransition(_ event: ProgressEvent, _ stamp: EventStamp) -> ApplyOutcome {
        let target: JobState
        switch event.payload {
        case .jobStateChanged(let from, let to, _, _):
            if let from, !from.canTransition(to: to) {
                return .rejected(Rejection(.invalidTransition, "job state machine forbids \(from.rawValue) → \(to.rawValue)"))
            }
            target = to
        case .jobCompleted: target = .completed
        case .jobFailed: target = .failed
        case .jobCanceled: target = .canceled
        default: return .applied
        }
        if let state, state.isTerminal, let stateStamp = stateField.stamp, stateStamp < stamp, state != target {
            return .rejected(Rejection(.invalidTransition, "job \(jobId) is already \(state.rawValue); it cannot become \(target.rawValue)"))
        }
        return .applied
    }

    private mutating func setState(_ next: JobState, _ stamp: EventStamp) {
        if next == .running { startedAt = min(startedAt ?? stamp.occurredAt, stamp.occurredAt) }
        stateField.offer(next, stamp)
        isTerminal = stateField.value?.isTerminal ?? false
    }

    private mutating func mergeDetails(_ job: JobDetails, _ stamp: EventStamp) {
        totalField.offer(job.totalVideos, stamp)
        titleField.offer(job.title, stamp)
        deadlineField.offer(job.processingDeadlineMs, stamp)
        createdAtField.offer(job.createdAt, stamp)
        priorityField.offer(job.priority, stamp)
        sheetIdField.offer(job.sheetId, stamp)
        sheetRangeField.offer(job.sheetRange, stamp)
    }

    /// Changes video `id` (created if new) and, if `viewing`, sets `view` to what the video's JSON shows now.
    private mutating func updateVideo(
        _ id: String, _ stamp: EventStamp, viewing: Bool, view: inout VideoView?, _ change: (inout VideoProgress) -> Void
    ) {
        // Changed in place, with one look-up: a copy in and out would retain and release every field of the video.
        var isNew = false
        let jobId = self.jobId
        var before: VideoTally.Entry?
        var after: VideoTally.Entry?
        Self.modify(&videos[id, default: { isNew = true; return VideoProgress(id: id, jobId: jobId, updatedAt: stamp.occurredAt) }()]) { video in
            before = isNew ? nil : VideoTally.Entry(video)
            change(&video)
            video.updatedAt = max(video.updatedAt, stamp.occurredAt)
            after = VideoTally.Entry(video)
            if viewing { view = VideoView(video) }
        }
        if let after { tally.update(from: before, to: after) }
    }

    private static func modify(_ video: inout VideoProgress, _ change: (inout VideoProgress) -> Void) { change(&video) }

    /// What video `id`'s JSON shows, if the job has it. Mutating only to read the video in place: a read through the
    /// table's getter copies it out, retaining and releasing every field and stamp (an applied video event's message
    /// takes one, on ingest's hot path).
    public mutating func view(ofVideo id: String) -> VideoView? {
        guard let index = videos.index(forKey: id) else { return nil }
        return Self.view(&videos.values[index])
    }

    private static func view(_ video: inout VideoProgress) -> VideoView { VideoView(video) }

    /// A copy that remembers only the latest `keep` event ids, to keep snapshots small. Older
    /// redeliveries are still harmless: applying is idempotent (only `events_applied` would count them).
    public func compacted(keepingEventIds keep: Int) -> JobAggregate {
        guard recentEventIds.count > keep else { return self }
        var copy = self
        copy.recentEventIds.keepLatest(keep)
        return copy
    }

    /// This aggregate without its videos (which the state topic keeps in records of their own).
    public func withoutVideos() -> JobAggregate {
        var copy = self
        copy.videos = [:]
        copy.tally = VideoTally()
        return copy
    }

    /// Puts restored videos back (replacing any of the same id) and recounts them; applies `limits`.
    public mutating func restore(videos restored: some Sequence<VideoProgress>, limits: AggregateLimits) {
        for video in restored where video.jobId == jobId { videos[video.id] = video }
        tally = VideoTally(videos.values)
        self = compacted(keepingEventIds: limits.maxEventIds)
        self.limits = limits
    }

    /// How many known videos are in `state`.
    public func count(_ state: VideoState) -> Int { tally.count(state) }
}

extension JobAggregate: Codable {
    private enum CodingKeys: String, CodingKey {
        case jobId, stateField, titleField, totalField, deadlineField, createdAtField, priorityField, sheetIdField, sheetRangeField
        case monitorField, errorField, videos, firstEventAt, lastEventAt, startedAt, eventsApplied, seenOrder, seenHead
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        jobId = try c.decode(String.self, forKey: .jobId)
        stateField = try c.decode(Stamped<JobState>.self, forKey: .stateField)
        isTerminal = stateField.value?.isTerminal ?? false
        titleField = try c.decode(Stamped<String>.self, forKey: .titleField)
        totalField = try c.decode(Stamped<Int>.self, forKey: .totalField)
        deadlineField = try c.decode(Stamped<Int64>.self, forKey: .deadlineField)
        createdAtField = try c.decode(Stamped<Int64>.self, forKey: .createdAtField)
        priorityField = try c.decode(Stamped<String>.self, forKey: .priorityField)
        sheetIdField = try c.decode(Stamped<String>.self, forKey: .sheetIdField)
        sheetRangeField = try c.decode(Stamped<String>.self, forKey: .sheetRangeField)
        monitorField = try c.decode(Stamped<MonitorCounts>.self, forKey: .monitorField)
        errorField = try c.decode(Stamped<ErrorInfo>.self, forKey: .errorField)
        firstEventAt = try c.decode(Int64.self, forKey: .firstEventAt)
        lastEventAt = try c.decode(Int64.self, forKey: .lastEventAt)
        startedAt = try c.decodeIfPresent(Int64.self, forKey: .startedAt)
        eventsApplied = min(max(0, try c.decode(Int.self, forKey: .eventsApplied)), 9_007_199_254_740_991)
        // A record from outside: a head out of range counts as 0 (it would trap on the next event).
        recentEventIds = RecentEventIds(ring: try c.decode([String].self, forKey: .seenOrder), head: try c.decode(Int.self, forKey: .seenHead))
        var restored: [String: VideoProgress] = [:]
        for video in try c.decodeIfPresent([VideoProgress].self, forKey: .videos) ?? [] where video.jobId == jobId { restored[video.id] = video }
        videos = restored
        tally = VideoTally(videos.values)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(jobId, forKey: .jobId)
        try c.encode(stateField, forKey: .stateField)
        try c.encode(titleField, forKey: .titleField)
        try c.encode(totalField, forKey: .totalField)
        try c.encode(deadlineField, forKey: .deadlineField)
        try c.encode(createdAtField, forKey: .createdAtField)
        try c.encode(priorityField, forKey: .priorityField)
        try c.encode(sheetIdField, forKey: .sheetIdField)
        try c.encode(sheetRangeField, forKey: .sheetRangeField)
        try c.encode(monitorField, forKey: .monitorField)
        try c.encode(errorField, forKey: .errorField)
        try c.encode(firstEventAt, forKey: .firstEventAt)
        try c.encode(lastEventAt, forKey: .lastEventAt)
        try c.encodeIfPresent(startedAt, forKey: .startedAt)
        try c.encode(eventsApplied, forKey: .eventsApplied)
        try c.encode(recentEventIds.ring.map(\.id), forKey: .seenOrder)
        try c.encode(recentEventIds.head, forKey: .seenHead)
        if !videos.isEmpty { try c.encode(Array(videos.values), forKey: .videos) }
    }
}

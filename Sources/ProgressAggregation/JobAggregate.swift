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

/// The aggregate of one job: a pure function of its events (content and `occurred_at` only).
///
/// Every field is "latest event wins" by `EventStamp`, and counts are derived from the
/// per-video states, so applying the same set of events in any order, or twice, gives the
/// same result. Duplicates by `event_id` are also recognised explicitly.
///
/// `Codable`, so the bridge can keep it in a changelog topic and restore it after a restart.
public struct JobAggregate: Sendable, Codable {
    public let jobId: String
    public private(set) var state: JobState?
    private var stateStamp: EventStamp?
    public private(set) var details = JobDetails()
    private var detailsStamp: EventStamp?
    private var totalStamp: EventStamp?
    public private(set) var monitorCounts: MonitorCounts?
    private var monitorStamp: EventStamp?
    public private(set) var error: ErrorInfo?
    public private(set) var videos: [String: VideoProgress] = [:]
    /// Known videos by state (videos never mentioned are not here).
    private var stateCounts: [VideoState: Int] = [:]
    public private(set) var firstEventAt: Int64
    public private(set) var lastEventAt: Int64
    /// Event time of the earliest transition to `running`.
    public private(set) var startedAt: Int64?
    /// Event time at which the job reached a terminal state.
    public private(set) var finishedAt: Int64?
    public private(set) var eventsApplied = 0
    private var seenEventIds = Set<String>()
    private var seenOrder: [String] = []
    private var seenHead = 0
    /// How many event ids are remembered for dedup; older ones are forgotten (their
    /// duplicates are still harmless, because applying is idempotent).
    public let dedupCapacity: Int

    /// Creates the empty aggregate of a job first seen at `firstEventAt`.
    public init(jobId: String, firstEventAt: Int64, dedupCapacity: Int = 100_000) {
        self.jobId = jobId
        self.firstEventAt = firstEventAt
        self.lastEventAt = firstEventAt
        self.dedupCapacity = dedupCapacity
    }

    /// Applies one event of this job.
    public mutating func apply(_ event: ProgressEvent) -> ApplyOutcome {
        precondition(event.jobId == jobId, "event of another job")
        if seenEventIds.contains(event.eventId) { return .duplicate }
        let stamp = EventStamp(event)
        if case .rejected(let rejection) = checkTransition(event, stamp) { return .rejected(rejection) }
        remember(event.eventId)
        eventsApplied += 1
        firstEventAt = min(firstEventAt, event.occurredAt)
        lastEventAt = max(lastEventAt, event.occurredAt)

        switch event.payload {
        case .jobStateChanged(_, let to, _, let job):
            if let job { mergeDetails(job, stamp) }
            setState(to, stamp)
        case .jobProgress(let counts):
            if monitorStamp.map({ $0 < stamp }) ?? true {
                monitorCounts = counts
                monitorStamp = stamp
            }
            setTotal(counts.totalVideos, stamp)
        case .videoCreated(let id, let rowIndex, let title):
            updateVideo(id, event.occurredAt) { video in
                video.rowIndex = rowIndex ?? video.rowIndex
                video.title = title ?? video.title
            }
        case .videoUpdated(let id, let videoState, let percent, let stage, let attempt):
            setVideoState(id, videoState, stamp) { video in
                video.progressPercent = percent ?? video.progressPercent
                video.stage = stage ?? video.stage
                video.attempt = attempt ?? video.attempt
            }
        case .videoCompleted(let id, let processingMs, let outputURL, let attempt):
            setVideoState(id, .completed, stamp) { video in
                video.progressPercent = 100
                video.processingMs = processingMs
                video.outputURL = outputURL ?? video.outputURL
                video.attempt = attempt ?? video.attempt
                video.error = nil
                video.retryable = nil
            }
        case .videoFailed(let id, let failure, let retryable, let attempt, let processingMs):
            setVideoState(id, .failed, stamp) { video in
                video.error = failure
                video.retryable = retryable
                video.attempt = attempt ?? video.attempt
                video.processingMs = processingMs ?? video.processingMs
            }
        case .jobCompleted(let summary):
            if let total = summary?.totalVideos { setTotal(total, stamp) }
            setState(.completed, stamp)
        case .jobFailed(let failure):
            if stateStamp.map({ $0 < stamp }) ?? true { error = failure }
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
        if let state, state.isTerminal, let stateStamp, stateStamp < stamp, state != target {
            return .rejected(Rejection(.invalidTransition, "job \(jobId) is already \(state.rawValue); it cannot become \(target.rawValue)"))
        }
        return .applied
    }

    private mutating func remember(_ eventId: String) {
        seenEventIds.insert(eventId)
        if seenOrder.count < dedupCapacity {
            seenOrder.append(eventId)
        } else {
            seenEventIds.remove(seenOrder[seenHead])
            seenOrder[seenHead] = eventId
            seenHead = (seenHead + 1) % dedupCapacity
        }
    }

    private mutating func setState(_ next: JobState, _ stamp: EventStamp) {
        if next == .running { startedAt = min(startedAt ?? stamp.occurredAt, stamp.occurredAt) }
        guard stateStamp.map({ $0 < stamp }) ?? true else { return }
        state = next
        stateStamp = stamp
        finishedAt = next.isTerminal ? stamp.occurredAt : nil
    }

    private mutating func setTotal(_ total: Int, _ stamp: EventStamp) {
        guard totalStamp.map({ $0 < stamp }) ?? true else { return }
        details.totalVideos = total
        totalStamp = stamp
    }

    private mutating func mergeDetails(_ job: JobDetails, _ stamp: EventStamp) {
        if let total = job.totalVideos { setTotal(total, stamp) }
        let newer = detailsStamp.map { $0 < stamp } ?? true
        func pick<T>(_ current: T?, _ incoming: T?) -> T? { newer ? (incoming ?? current) : (current ?? incoming) }
        details.title = pick(details.title, job.title)
        details.processingDeadlineMs = pick(details.processingDeadlineMs, job.processingDeadlineMs)
        details.createdAt = pick(details.createdAt, job.createdAt)
        details.priority = pick(details.priority, job.priority)
        details.sheetId = pick(details.sheetId, job.sheetId)
        details.sheetRange = pick(details.sheetRange, job.sheetRange)
        if newer { detailsStamp = stamp }
    }

    private mutating func updateVideo(_ id: String, _ at: Int64, _ change: (inout VideoProgress) -> Void) {
        var video: VideoProgress
        if let existing = videos[id] {
            video = existing
        } else {
            stateCounts[.pending, default: 0] += 1
            video = VideoProgress(id: id, jobId: jobId, updatedAt: at)
        }
        change(&video)
        video.updatedAt = max(video.updatedAt, at)
        videos[id] = video
    }

    private mutating func setVideoState(_ id: String, _ next: VideoState, _ stamp: EventStamp, _ change: (inout VideoProgress) -> Void) {
        var transition: (from: VideoState, to: VideoState)?
        updateVideo(id, stamp.occurredAt) { video in
            guard video.stateStamp.map({ $0 < stamp }) ?? true else { return }
            transition = (video.state, next)
            video.state = next
            video.stateStamp = stamp
            change(&video)
        }
        if let transition {
            stateCounts[transition.from, default: 0] -= 1
            stateCounts[transition.to, default: 0] += 1
        }
    }

    /// A copy that remembers only the latest `keep` event ids, to keep snapshots small. Older
    /// redeliveries are still harmless: applying is idempotent (only `events_applied` would count them).
    public func compacted(keepingEventIds keep: Int) -> JobAggregate {
        guard seenOrder.count > keep else { return self }
        var copy = self
        let ordered = Array(seenOrder[seenHead...] + seenOrder[..<seenHead])
        copy.seenOrder = Array(ordered.suffix(keep))
        copy.seenEventIds = Set(copy.seenOrder)
        copy.seenHead = 0
        return copy
    }

    /// How many known videos are in `state`.
    public func count(_ state: VideoState) -> Int { stateCounts[state, default: 0] }
}

/// The nine event types of contract v1.
public enum EventType: String, Sendable, CaseIterable {
    case jobStateChanged = "job.state_changed"
    case jobProgress = "job.progress"
    case videoCreated = "video.created"
    case videoUpdated = "video.updated"
    case videoCompleted = "video.completed"
    case videoFailed = "video.failed"
    case jobCompleted = "job.completed"
    case jobFailed = "job.failed"
    case jobCanceled = "job.canceled"

    /// The type whose name is `name`, as `init(rawValue:)` finds it, but matched by the name's length first:
    /// `init(rawValue:)` compares the name with every case's in turn, and every event's type is matched. The answers
    /// are the same: a string canonically equivalent to an ASCII name but of another length needs a character that
    /// decomposes to K, `;` or `` ` ``, which no name holds (and the schema's `enum` compares bytes anyway).
    public init?(named name: String) {
        func match(_ type: EventType) -> EventType? { name == type.rawValue ? type : nil }
        let found: EventType? =
            switch name.utf8.count {
            case 10: match(.jobFailed)
            case 12: match(.jobProgress) ?? match(.videoFailed) ?? match(.jobCanceled)
            case 13: match(.videoCreated) ?? match(.videoUpdated) ?? match(.jobCompleted)
            case 15: match(.videoCompleted)
            case 17: match(.jobStateChanged)
            default: nil
            }
        guard let found else { return nil }
        self = found
    }

    /// Whether the event is about a job as a whole (its message carries a `JobProgress`).
    /// (A switch, not a look at the raw value's prefix: it is asked for every event applied.)
    public var isJobEvent: Bool {
        switch self {
        case .jobStateChanged, .jobProgress, .jobCompleted, .jobFailed, .jobCanceled: true
        case .videoCreated, .videoUpdated, .videoCompleted, .videoFailed: false
        }
    }
}

/// A job's lifecycle state.
public enum JobState: String, Sendable, CaseIterable, Codable {
    case pending, running, pausing, paused, completing, completed, canceling, canceled, failed

    /// Completed, canceled and failed jobs never change state again.
    public var isTerminal: Bool { self == .completed || self == .canceled || self == .failed }

    /// The job state machine: which states may follow this one.
    public func canTransition(to next: JobState) -> Bool {
        if next == self { return true }  // a repeated announcement is harmless
        switch self {
        case .pending: return [.running, .canceling, .canceled, .failed].contains(next)
        case .running: return [.pausing, .paused, .completing, .completed, .canceling, .canceled, .failed].contains(next)
        case .pausing: return [.paused, .running, .canceling, .canceled, .failed].contains(next)
        case .paused: return [.running, .canceling, .canceled, .failed].contains(next)
        case .completing: return [.completed, .failed].contains(next)
        case .canceling: return [.canceled, .failed].contains(next)
        case .completed, .canceled, .failed: return false
        }
    }
}

/// A video's lifecycle state.
public enum VideoState: String, Sendable, CaseIterable, Codable {
    case pending, processing, completed, failed, skipped, canceled

    /// Completed, failed, skipped and canceled videos count towards `percent_complete`.
    public var isTerminal: Bool { self != .pending && self != .processing }
}

/// An error reported by the monitor (`{code, message}`).
public struct ErrorInfo: Sendable, Hashable, Codable {
    public let code: String
    public let message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }
}

/// Job details carried by `job.state_changed` (usually the first event of a job).
public struct JobDetails: Sendable, Hashable, Codable {
    public var title: String?
    public var totalVideos: Int?
    public var processingDeadlineMs: Int64?
    public var createdAt: Int64?
    public var priority: String?
    public var sheetId: String?
    public var sheetRange: String?

    public init() {}
}

/// The payload of each event type, decoded.
public enum EventPayload: Sendable, Hashable {
    // The two cases with the job's details or summary are boxed (`indirect`): inline they made every event — and every
    // record between ingest's stages, moved several times — ~65 bytes larger, for events a job has one or two of.
    indirect case jobStateChanged(from: JobState?, to: JobState, reason: String?, job: JobDetails?)
    case jobProgress(MonitorCounts)
    case videoCreated(videoId: String, rowIndex: Int?, title: String?)
    case videoUpdated(videoId: String, state: VideoState, progressPercent: Double?, stage: String?, attempt: Int?)
    case videoCompleted(videoId: String, processingMs: Int64, outputURL: String?, attempt: Int?)
    case videoFailed(videoId: String, error: ErrorInfo, retryable: Bool, attempt: Int?, processingMs: Int64?)
    indirect case jobCompleted(summary: JobSummary?)
    case jobFailed(error: ErrorInfo)
    case jobCanceled(reason: String?, canceledBy: String?)

    /// The video the event is about, for `video.*` events.
    public var videoId: String? {
        switch self {
        case .videoCreated(let id, _, _), .videoUpdated(let id, _, _, _, _), .videoCompleted(let id, _, _, _),
            .videoFailed(let id, _, _, _, _):
            id
        default: nil
        }
    }
}

/// The monitor's own counts (`job.progress`).
public struct MonitorCounts: Sendable, Hashable, Codable {
    public var totalVideos: Int
    public var completed: Int
    public var failed: Int
    public var skipped: Int?
    public var processing: Int?
    public var percentComplete: Double?

    public init(totalVideos: Int, completed: Int, failed: Int, skipped: Int? = nil, processing: Int? = nil, percentComplete: Double? = nil) {
        self.totalVideos = totalVideos
        self.completed = completed
        self.failed = failed
        self.skipped = skipped
        self.processing = processing
        self.percentComplete = percentComplete
    }
}

/// The optional summary of `job.completed`.
public struct JobSummary: Sendable, Hashable {
    public var totalVideos: Int?
    public var completed: Int?
    public var failed: Int?
    public var skipped: Int?
    public var durationMs: Int64?

    public init() {}
}

/// One decoded, schema-valid progress event.
public struct ProgressEvent: Sendable, Hashable {
    /// The dedup key.
    public let eventId: String
    public let type: EventType
    public let jobId: String
    /// `occurred_at`, in milliseconds since the Unix epoch.
    public let occurredAt: Int64
    /// The monitor's per-job sequence number, if it sent one.
    public let seq: Int64?
    public let payload: EventPayload

    public init(eventId: String, type: EventType, jobId: String, occurredAt: Int64, seq: Int64?, payload: EventPayload) {
        self.eventId = eventId
        self.type = type
        self.jobId = jobId
        self.occurredAt = occurredAt
        self.seq = seq
        self.payload = payload
    }
}

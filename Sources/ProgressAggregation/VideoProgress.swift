import ProgressContract

/// The state of one video, as subscribers see it.
public struct VideoProgress: Sendable, Hashable, Codable {
    public let id: String
    public let jobId: String
    public internal(set) var state: VideoState = .pending
    public internal(set) var progressPercent: Double?
    public internal(set) var stage: String?
    public internal(set) var attempt: Int?
    public internal(set) var processingMs: Int64?
    public internal(set) var error: ErrorInfo?
    public internal(set) var retryable: Bool?
    public internal(set) var outputURL: String?
    public internal(set) var title: String?
    public internal(set) var rowIndex: Int?
    /// Event time of the latest event applied to this video (ms since epoch).
    public internal(set) var updatedAt: Int64
    /// The stamp of the event that set `state`; `nil` while only `video.created` was seen.
    var stateStamp: EventStamp?

    init(id: String, jobId: String, updatedAt: Int64) {
        self.id = id
        self.jobId = jobId
        self.updatedAt = updatedAt
    }
}

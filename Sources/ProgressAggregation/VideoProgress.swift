import ProgressContract

/// The state of one video, as subscribers see it.
///
/// Every field is "latest event that carried it wins" (`Stamped`), so a video's state is the same
/// whatever order its events arrive in. The state, its error and its retry flag travel together: they
/// are what the latest state-bearing event said.
public struct VideoProgress: Sendable, Hashable {
    /// What a state-bearing event (`video.updated`, `video.completed`, `video.failed`) says together.
    struct Outcome: Sendable, Hashable {
        var state: VideoState
        var error: ErrorInfo?
        var retryable: Bool?
    }

    public let id: String
    public let jobId: String
    var outcome = Stamped<Outcome>()
    var percent = Stamped<Double>()
    var stageField = Stamped<String>()
    var attemptField = Stamped<Int>()
    var processingField = Stamped<Int64>()
    var outputField = Stamped<String>()
    var titleField = Stamped<String>()
    var rowIndexField = Stamped<Int>()
    /// Event time of the latest event applied to this video (ms since epoch).
    public internal(set) var updatedAt: Int64

    init(id: String, jobId: String, updatedAt: Int64) {
        self.id = id
        self.jobId = jobId
        self.updatedAt = updatedAt
    }

    public var state: VideoState { outcome.value?.state ?? .pending }
    public var error: ErrorInfo? { outcome.value?.error }
    public var retryable: Bool? { outcome.value?.retryable }
    public var progressPercent: Double? { percent.value }
    public var stage: String? { stageField.value }
    public var attempt: Int? { attemptField.value }
    public var processingMs: Int64? { processingField.value }
    public var outputURL: String? { outputField.value }
    public var title: String? { titleField.value }
    public var rowIndex: Int? { rowIndexField.value }
    /// The stamp of the event that set `state`; `nil` while only `video.created` was seen.
    var stateStamp: EventStamp? { outcome.stamp }
}

extension VideoProgress: Codable {
    // The state topic holds one record per video, so the encoding is compact: the distinct stamps once
    // ("s"), and each field as [value, index into "s"].
    private enum Key: String, CodingKey {
        case id = "i", jobId = "j", stamps = "s", state = "st", error = "e", retryable = "rt", percent = "p", stage = "sg"
        case attempt = "a", processingMs = "ms", outputURL = "u", title = "t", rowIndex = "r", updatedAt = "at"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(id, forKey: .id)
        try c.encode(jobId, forKey: .jobId)
        try c.encode(updatedAt, forKey: .updatedAt)
        var stamps: [EventStamp] = []
        func index(_ stamp: EventStamp?) -> Int {
            guard let stamp else { return -1 }
            if let i = stamps.firstIndex(of: stamp) { return i }
            stamps.append(stamp)
            return stamps.count - 1
        }
        func put<V: Encodable & Hashable & Sendable>(_ field: Stamped<V>, _ key: Key) throws {
            guard let value = field.value else { return }
            var pair = c.nestedUnkeyedContainer(forKey: key)
            try pair.encode(value)
            try pair.encode(index(field.stamp))
        }
        if let o = outcome.value {
            try put(Stamped(value: o.state, stamp: outcome.stamp), .state)
            try c.encodeIfPresent(o.error.map { [$0.code, $0.message] }, forKey: .error)
            try c.encodeIfPresent(o.retryable, forKey: .retryable)
        }
        try put(percent, .percent)
        try put(stageField, .stage)
        try put(attemptField, .attempt)
        try put(processingField, .processingMs)
        try put(outputField, .outputURL)
        try put(titleField, .title)
        try put(rowIndexField, .rowIndex)
        try c.encode(stamps, forKey: .stamps)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        self.init(id: try c.decode(String.self, forKey: .id), jobId: try c.decode(String.self, forKey: .jobId), updatedAt: try c.decode(Int64.self, forKey: .updatedAt))
        let stamps = try c.decode([EventStamp].self, forKey: .stamps)
        func get<V: Decodable & Hashable & Sendable>(_ key: Key, _ type: V.Type) throws -> Stamped<V> {
            guard c.contains(key) else { return Stamped() }
            var pair = try c.nestedUnkeyedContainer(forKey: key)
            let value = try pair.decode(V.self)
            let i = try pair.decode(Int.self)
            guard stamps.indices.contains(i) else {
                throw DecodingError.dataCorruptedError(in: pair, debugDescription: "stamp index \(i) out of range")
            }
            return Stamped(value: value, stamp: stamps[i])
        }
        let state = try get(.state, VideoState.self)
        if let s = state.value {
            let error = try c.decodeIfPresent([String].self, forKey: .error)
            guard error == nil || error?.count == 2 else {
                throw DecodingError.dataCorruptedError(forKey: .error, in: c, debugDescription: "error is [code, message]")
            }
            outcome = Stamped(
                value: Outcome(state: s, error: error.map { ErrorInfo(code: $0[0], message: $0[1]) }, retryable: try c.decodeIfPresent(Bool.self, forKey: .retryable)),
                stamp: state.stamp)
        }
        percent = try get(.percent, Double.self)
        stageField = try get(.stage, String.self)
        attemptField = try get(.attempt, Int.self)
        processingField = try get(.processingMs, Int64.self)
        outputField = try get(.outputURL, String.self)
        titleField = try get(.title, String.self)
        rowIndexField = try get(.rowIndex, Int.self)
    }
}

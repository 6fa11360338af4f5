import JSONSchema

/// Turns a Kafka message value into a `ProgressEvent`, or says precisely why it cannot.
///
/// Order of checks: JSON syntax, `schema_version`, `type`, then the schemas. The typed
/// decoding afterwards relies on the schemas having checked every field.
public struct EventDecoder: Sendable {
    /// The contract major version this bridge understands.
    public static let supportedSchemaVersion: Int64 = 1

    private let parser: JSONParser
    private let validator: JSONSchemaValidator

    /// Creates a decoder that validates against the envelope schema compiled in `validator`.
    public init(validator: JSONSchemaValidator, limits: JSONParserLimits = .init(maxDepth: 32, maxBytes: 256 * 1024)) {
        self.validator = validator
        // The contract's member names and enum values are made once, not for every event.
        self.parser = JSONParser(limits: limits, knownStrings: validator.knownStrings)
    }

    /// Decodes and validates one message value.
    public func decode<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Result<ProgressEvent, Rejection> {
        let document: JSONValue
        do {
            document = try parser.parse(bytes)
        } catch {
            return .failure(Rejection(.malformedJSON, error.description))
        }
        return decode(document)
    }

    /// Validates and decodes an already parsed document.
    public func decode(_ document: JSONValue) -> Result<ProgressEvent, Rejection> {
        // The envelope's members are looked up in the object taken out once (a look-up through the `JSONValue` takes
        // the object out of it each time).
        guard case .object(let envelope) = document else {
            return .failure(Rejection(.schemaViolation, "/: expected an object, got \(document.typeName)"))
        }
        if let version = envelope["schema_version"]?.int64Value, version > Self.supportedSchemaVersion {
            return .failure(Rejection(.unsupportedSchemaVersion, "schema_version \(version) is newer than the supported version \(Self.supportedSchemaVersion)"))
        }
        // Matched once: the typed decoding below takes it from here.
        let type = envelope["type"]?.stringValue.map { (name: $0, type: EventType(named: $0)) }
        if let type, type.type == nil {
            return .failure(Rejection(.unknownType, "type \"\(type.name.prefix(128))\" is not one of the contract's event types"))
        }
        let result = validator.validate(document, maxErrors: 4)
        guard result.isValid else {
            let detail = result.errors.prefix(3).map(\.description).joined(separator: "; ")
            return .failure(Rejection(.schemaViolation, detail.isEmpty ? "rejected by the schema" : detail))
        }
        return TypedEventDecoding.decode(envelope, type: type?.type)
    }
}

/// Field extraction from a schema-valid document. Pure; never throws on valid input.
enum TypedEventDecoding {
    /// `type`: the document's `type`, already matched.
    static func decode(_ d: JSONObject, type: EventType?) -> Result<ProgressEvent, Rejection> {
        guard let type,
            let eventId = d["event_id"]?.stringValue,
            let jobId = d["job_id"]?.stringValue,
            let occurredText = d["occurred_at"]?.stringValue,
            let dataValue = d["data"]
        else {
            return .failure(Rejection(.schemaViolation, "envelope fields missing"))
        }
        // The schemas leave `format` as an annotation (as most validators do by default); the
        // bridge needs a real instant, so it checks the timestamp itself.
        guard let occurredAt = RFC3339.parseMilliseconds(occurredText) else {
            return .failure(Rejection(.schemaViolation, "/occurred_at: \"\(occurredText.prefix(64))\" is not an RFC 3339 date-time"))
        }
        // (Anything but an object has no members.)
        let data: JSONObject
        if case .object(let members) = dataValue { data = members } else { data = JSONObject() }
        let payload: EventPayload
        switch decodePayload(type, data) {
        case .success(let p): payload = p
        case .failure(let rejection): return .failure(rejection)
        }
        return .success(ProgressEvent(eventId: eventId, type: type, jobId: jobId, occurredAt: occurredAt, seq: d["seq"]?.int64Value, payload: payload))
    }

    private static func int(_ v: JSONValue?) -> Int? { v?.int64Value.map { Int(clamping: $0) } }

    private static func error(_ v: JSONValue?) -> ErrorInfo {
        ErrorInfo(code: v?["code"]?.stringValue ?? "", message: v?["message"]?.stringValue ?? "")
    }

    private static func decodePayload(_ type: EventType, _ data: JSONObject) -> Result<EventPayload, Rejection> {
        switch type {
        case .jobStateChanged:
            guard let to = data["to"]?.stringValue.flatMap(JobState.init(rawValue:)) else {
                return .failure(Rejection(.schemaViolation, "/data/to: not a job state"))
            }
            let from = data["from"]?.stringValue.flatMap(JobState.init(rawValue:))
            var details: JobDetails?
            if let job = data["job"] {
                var d = JobDetails()
                d.title = job["title"]?.stringValue
                d.totalVideos = int(job["total_videos"])
                d.processingDeadlineMs = job["processing_deadline_ms"]?.int64Value
                if let created = job["created_at"]?.stringValue {
                    guard let ms = RFC3339.parseMilliseconds(created) else {
                        return .failure(Rejection(.schemaViolation, "/data/job/created_at: not an RFC 3339 date-time"))
                    }
                    d.createdAt = ms
                }
                d.priority = job["priority"]?.stringValue
                d.sheetId = job["sheet_source"]?["sheet_id"]?.stringValue
                d.sheetRange = job["sheet_source"]?["range"]?.stringValue
                details = d
            }
            return .success(.jobStateChanged(from: from, to: to, reason: data["reason"]?.stringValue, job: details))
        case .jobProgress:
            return .success(
                .jobProgress(
                    MonitorCounts(
                        totalVideos: int(data["total_videos"]) ?? 0, completed: int(data["completed"]) ?? 0,
                        failed: int(data["failed"]) ?? 0, skipped: int(data["skipped"]), processing: int(data["processing"]),
                        percentComplete: data["percent_complete"]?.doubleValue)))
        case .videoCreated:
            return .success(.videoCreated(videoId: data["video_id"]?.stringValue ?? "", rowIndex: int(data["row_index"]), title: data["title"]?.stringValue))
        case .videoUpdated:
            guard let state = data["state"]?.stringValue.flatMap(VideoState.init(rawValue:)) else {
                return .failure(Rejection(.schemaViolation, "/data/state: not a video state"))
            }
            return .success(
                .videoUpdated(
                    videoId: data["video_id"]?.stringValue ?? "", state: state, progressPercent: data["progress_percent"]?.doubleValue,
                    stage: data["stage"]?.stringValue, attempt: int(data["attempt"])))
        case .videoCompleted:
            return .success(
                .videoCompleted(
                    videoId: data["video_id"]?.stringValue ?? "", processingMs: data["processing_ms"]?.int64Value ?? 0,
                    outputURL: data["output_url"]?.stringValue, attempt: int(data["attempt"])))
        case .videoFailed:
            return .success(
                .videoFailed(
                    videoId: data["video_id"]?.stringValue ?? "", error: error(data["error"]), retryable: data["retryable"]?.boolValue ?? false,
                    attempt: int(data["attempt"]), processingMs: data["processing_ms"]?.int64Value))
        case .jobCompleted:
            var summary: JobSummary?
            if let s = data["summary"] {
                var js = JobSummary()
                js.totalVideos = int(s["total_videos"])
                js.completed = int(s["completed"])
                js.failed = int(s["failed"])
                js.skipped = int(s["skipped"])
                js.durationMs = s["duration_ms"]?.int64Value
                summary = js
            }
            return .success(.jobCompleted(summary: summary))
        case .jobFailed:
            return .success(.jobFailed(error: error(data["error"])))
        case .jobCanceled:
            return .success(.jobCanceled(reason: data["reason"]?.stringValue, canceledBy: data["canceled_by"]?.stringValue))
        }
    }
}

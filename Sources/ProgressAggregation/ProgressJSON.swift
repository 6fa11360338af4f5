import JSONSchema
import ProgressContract

/// The JSON shapes subscribers receive (snake_case, as the dashboard's hook expects).
extension JobProgress {
    /// This progress as a JSON object.
    public var json: JSONValue {
        var o: JSONObject = [:]
        o["job_id"] = .string(jobId)
        o["state"] = state.map { .string($0.rawValue) } ?? .null
        o["title"] = title.map(JSONValue.string) ?? .null
        o["total_videos"] = total(totalVideos)
        o["pending"] = int(pending)
        o["processing"] = int(processing)
        o["completed"] = int(completed)
        o["failed"] = int(failed)
        o["skipped"] = int(skipped)
        o["canceled"] = int(canceled)
        o["percent_complete"] = .number(JSONNumber(percentComplete))
        o["success_rate"] = successRate.map { .number(JSONNumber($0)) } ?? .null
        o["throughput_per_minute"] = throughputPerMinute.map { .number(JSONNumber($0)) } ?? .null
        o["eta_seconds"] = etaSeconds.map { .number(JSONNumber($0)) } ?? .null
        o["elapsed_ms"] = .number(JSONNumber(elapsedMs))
        o["processing_deadline_ms"] = processingDeadlineMs.map { .number(JSONNumber($0)) } ?? .null
        o["deadline_at_risk"] = .bool(deadlineAtRisk)
        o["priority"] = priority.map(JSONValue.string) ?? .null
        o["created_at"] = timestamp(createdAt)
        o["started_at"] = timestamp(startedAt)
        o["finished_at"] = timestamp(finishedAt)
        o["updated_at"] = timestamp(updatedAt)
        o["events_applied"] = int(eventsApplied)
        o["counts_source"] = .string(countsFromMonitor ? "monitor" : "videos")
        o["processing_time_ms"] =
            processingTime.map {
                .object([
                    "mean": .number(JSONNumber(($0.mean * 10).rounded() / 10)), "p50": .number(JSONNumber($0.p50)),
                    "p95": .number(JSONNumber($0.p95)), "samples": int($0.samples),
                ])
            } ?? .null
        o["error"] = error.map { $0.json } ?? .null
        o["sheet_source"] = sheetId.map { .object(["sheet_id": .string($0), "range": sheetRange.map(JSONValue.string) ?? .null]) } ?? .null
        return .object(o)
    }
}

extension VideoProgress {
    /// This video as a JSON object.
    public var json: JSONValue {
        var o: JSONObject = [:]
        o["id"] = .string(id)
        o["job_id"] = .string(jobId)
        o["state"] = .string(state.rawValue)
        o["progress_percent"] = progressPercent.map { .number(JSONNumber($0)) } ?? .null
        o["stage"] = stage.map(JSONValue.string) ?? .null
        o["attempt"] = attempt.map { int($0) } ?? .null
        o["processing_ms"] = processingMs.map { .number(JSONNumber($0)) } ?? .null
        o["error"] = error.map { $0.json } ?? .null
        o["retryable"] = retryable.map(JSONValue.bool) ?? .null
        o["output_url"] = outputURL.map(JSONValue.string) ?? .null
        o["title"] = title.map(JSONValue.string) ?? .null
        o["row_index"] = rowIndex.map { int($0) } ?? .null
        o["updated_at"] = timestamp(updatedAt)
        return .object(o)
    }
}

/// What a video's JSON shows, without the stamps that decided it: a light copy of a video, to write later (an applied
/// event's message is written only when somebody needs it).
///
/// A class: ingest makes one for every applied video event and hands it on through several calls into the event's
/// message draft; as a struct (~200 bytes) it was copied whole at each, with a retain and release of every string.
public final class VideoView: Sendable, Equatable {
    public let id: String
    public let jobId: String
    public let state: VideoState
    public let progressPercent: Double?
    public let stage: String?
    public let attempt: Int?
    public let processingMs: Int64?
    public let error: ErrorInfo?
    public let retryable: Bool?
    public let outputURL: String?
    public let title: String?
    public let rowIndex: Int?
    public let updatedAt: Int64

    public init(_ video: VideoProgress) {
        id = video.id
        jobId = video.jobId
        state = video.state
        progressPercent = video.progressPercent
        stage = video.stage
        attempt = video.attempt
        processingMs = video.processingMs
        error = video.error
        retryable = video.retryable
        outputURL = video.outputURL
        title = video.title
        rowIndex = video.rowIndex
        updatedAt = video.updatedAt
    }

    public static func == (lhs: VideoView, rhs: VideoView) -> Bool {
        lhs.id == rhs.id && lhs.jobId == rhs.jobId && lhs.state == rhs.state && lhs.progressPercent == rhs.progressPercent
            && lhs.stage == rhs.stage && lhs.attempt == rhs.attempt && lhs.processingMs == rhs.processingMs && lhs.error == rhs.error
            && lhs.retryable == rhs.retryable && lhs.outputURL == rhs.outputURL && lhs.title == rhs.title && lhs.rowIndex == rhs.rowIndex
            && lhs.updatedAt == rhs.updatedAt
    }

    /// The UTF-8 bytes of every string it holds: what it holds beyond its fixed size. (Every `String` field counts; a
    /// test compares this with all the strings reflection finds, so a field added later cannot be missed.)
    public var stringBytes: Int {
        func count(_ text: String?) -> Int { text?.utf8.count ?? 0 }
        return count(id) + count(jobId) + count(stage) + count(outputURL) + count(title) + count(error?.code) + count(error?.message)
    }

    /// Appends exactly the bytes `VideoProgress.json.serialized()` gives (keys in sorted order), without building the
    /// JSON tree: every video event's message carries one, so this is on ingest's hot path.
    public func writeJSON(into out: inout [UInt8]) {
        // Each key with its punctuation is one static run of bytes: one append, not four.
        func raw(_ text: StaticString) {
            out.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        }
        func string(_ value: String?) {
            if let value { JSONValue.writeEscaped(value, into: &out) } else { raw("null") }
        }
        func number(_ value: JSONNumber?) {
            if let value { JSONValue.writeNumber(value, into: &out) } else { raw("null") }
        }
        out.reserveCapacity(out.count + 320)
        raw(#"{"attempt":"#)
        number(attempt.map { JSONNumber(Int64($0)) })
        raw(#","error":"#)
        if let error { error.json.write(into: &out) } else { raw("null") }
        raw(#","id":"#)
        string(id)
        raw(#","job_id":"#)
        string(jobId)
        raw(#","output_url":"#)
        string(outputURL)
        raw(#","processing_ms":"#)
        number(processingMs.map { JSONNumber($0) })
        raw(#","progress_percent":"#)
        number(progressPercent.map { JSONNumber($0) })
        raw(#","retryable":"#)
        if let retryable { retryable ? raw("true") : raw("false") } else { raw("null") }
        raw(#","row_index":"#)
        number(rowIndex.map { JSONNumber(Int64($0)) })
        raw(#","stage":"#)
        string(stage)
        raw(#","state":"#)
        string(state.rawValue)
        raw(#","title":"#)
        string(title)
        raw(#","updated_at":""#)
        RFC3339.write(milliseconds: updatedAt, into: &out)
        raw(#""}"#)
    }
}

extension ErrorInfo {
    /// `{code, message}`.
    public var json: JSONValue { .object(["code": .string(code), "message": .string(message)]) }
}

private func int(_ v: Int) -> JSONValue { .number(JSONNumber(Int64(v))) }
private func total(_ v: Int?) -> JSONValue { v.map { int($0) } ?? .null }
private func timestamp(_ ms: Int64?) -> JSONValue { ms.map { .string(RFC3339.format(milliseconds: $0)) } ?? .null }

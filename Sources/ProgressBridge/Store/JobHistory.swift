import DequeModule
import ProgressAggregation
import ProgressContract

/// What an applied event's message says, kept unwritten until somebody needs it. Most jobs have no subscriber while
/// their events are applied, and writing each event's JSON was about a third of applying it (measured with `perf`
/// over the ingest benchmark). The values are copied when the event is applied, so a message written later has the
/// very bytes it would have had then. (A class: the history moves it around, one reference, not a video's every field.)
final class EventMessageDraft: Sendable {
    /// The message's `data`: the job's progress (job events), what the video shows now (video events), or nothing.
    /// A reference either way (a job's progress boxed, `indirect`): ingest hands it on through several calls, and a
    /// job's progress inline (~370 bytes) made every payload that large, copied whole at each.
    enum Payload: Sendable {
        indirect case job(JobProgress)
        case video(VideoView)
        case none
    }

    let type: EventType
    let jobId: String
    let seq: Int64
    let occurredAt: Int64
    let eventId: String
    /// The event record's W3C trace context (already checked).
    let traceparent: String?
    let payload: Payload
    /// What holding it counts for against the history's byte limit: its fixed part and every byte of every string it
    /// holds (counted whole, although they share their storage with the job's aggregate). Written, its message is
    /// counted by its real size (JSON escaping can make that up to six times a string's bytes; the history trims
    /// itself after writing).
    let estimatedBytes: Int

    init(type: EventType, jobId: String, seq: Int64, occurredAt: Int64, eventId: String, traceparent: String?, payload: Payload) {
        self.type = type
        self.jobId = jobId
        self.seq = seq
        self.occurredAt = occurredAt
        self.eventId = eventId
        self.traceparent = traceparent
        self.payload = payload
        self.estimatedBytes = Self.estimate(jobId: jobId, eventId: eventId, traceparent: traceparent, payload: payload)
    }

    /// The message, written now.
    func message() -> OutboundMessage {
        .event(
            type: type.rawValue, jobId: jobId, seq: seq, occurredAt: occurredAt, eventId: eventId, traceparent: traceparent,
            writeData: { out in
                switch payload {
                case .job(let progress): progress.json.write(into: &out)
                case .video(let video): video.writeJSON(into: &out)
                case .none: out.append(contentsOf: "null".utf8)
                }
            })
    }

    private static func estimate(jobId: String, eventId: String, traceparent: String?, payload: Payload) -> Int {
        // The envelope's keys, seq and ts; a job's progress has ~25 keys and numbers, a video ~13.
        let envelope = 160 + eventId.utf8.count + jobId.utf8.count + (traceparent?.utf8.count ?? 0)
        switch payload {
        case .job(let progress): return envelope + 1_024 + progress.stringBytes
        case .video(let video): return envelope + 384 + video.stringBytes
        case .none: return envelope
        }
    }
}

/// A job's latest messages, for `resume`: at most `limit` of them and about `byteLimit` bytes, the oldest dropped
/// first. A message is written when it is first replayed (or was written already, for subscribers).
struct JobHistory {
    enum Entry {
        case written(OutboundMessage)
        case unwritten(EventMessageDraft)

        var seq: Int64 {
            switch self {
            case .written(let message): message.seq
            case .unwritten(let draft): draft.seq
            }
        }

        var byteCount: Int {
            switch self {
            case .written(let message): message.byteCount
            case .unwritten(let draft): draft.estimatedBytes
            }
        }
    }

    private var entries = Deque<Entry>()
    /// What the entries count for (drafts by their estimate, written messages by their size).
    private(set) var bytes = 0
    /// Every message with a larger `seq` is here (seqs have gaps: other jobs' offsets lie between).
    private(set) var from: Int64 = 0

    /// Adds the latest message, dropping the oldest past `limit` messages or `byteLimit` bytes (the latest stays).
    mutating func append(_ entry: Entry, limit: Int, byteLimit: Int) {
        entries.append(entry)
        bytes += entry.byteCount
        trim(limit: limit, byteLimit: byteLimit)
    }

    /// Drops the oldest past `limit` messages or `byteLimit` bytes (the latest stays).
    private mutating func trim(limit: Int, byteLimit: Int) {
        while entries.count > limit || (bytes > byteLimit && entries.count > 1) {
            let dropped = entries.removeFirst()
            bytes -= dropped.byteCount
            // Never back: messages up to a `forget(through:)` (an older incarnation of the job) stay unreplayable.
            from = max(from, dropped.seq)
        }
    }

    /// Nothing up to `seq` can be replayed any more (the job started afresh, or was restored at `seq`).
    mutating func forget(through seq: Int64) {
        from = max(from, seq)
    }

    /// The messages after `lastSeq` (which must be at least `from`), oldest first; those not written yet are
    /// written now, and kept written (then the history is trimmed to its limits again: a written message can be
    /// larger than its draft was counted).
    mutating func messages(after lastSeq: Int64, limit: Int, byteLimit: Int) -> [OutboundMessage] {
        defer { trim(limit: limit, byteLimit: byteLimit) }
        var first = entries.endIndex
        while first > entries.startIndex, entries[first - 1].seq > lastSeq { first -= 1 }
        var replay: [OutboundMessage] = []
        replay.reserveCapacity(entries.endIndex - first)
        for index in first..<entries.endIndex {
            switch entries[index] {
            case .written(let message):
                replay.append(message)
            case .unwritten(let draft):
                let message = draft.message()
                bytes += message.byteCount - draft.estimatedBytes
                entries[index] = .written(message)
                replay.append(message)
            }
        }
        return replay
    }
}

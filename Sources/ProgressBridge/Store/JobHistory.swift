import DequeModule
import ProgressAggregation
import ProgressContract

/// What an applied event's message says, kept unwritten until somebody needs it. Most jobs have no subscriber while
/// their events are applied, and writing each event's JSON was about a third of applying it (measured with `perf`
/// over the ingest benchmark). The values are copied when the event is applied, so a message written later has the
/// very bytes it would have had then. (A class: the history moves it around, one reference, not a video's every field.)
final class EventMessageDraft: Sendable {
    /// The message's `data`: the job's progress (job events), what the video shows now (video events), or nothing.
    enum Payload: Sendable {
        case job(JobProgress)
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
    /// About as many bytes as its message will have: what holding it counts for against the history's byte limit.
    /// (Its strings are counted whole, although they share their storage with the job's aggregate.)
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
        func count(_ text: String?) -> Int { text?.utf8.count ?? 0 }
        let envelope = 128 + count(eventId) + count(jobId) + count(traceparent)
        switch payload {
        case .job(let progress):
            return envelope + 768 + count(progress.title) + count(progress.priority) + count(progress.error?.code) + count(progress.error?.message)
        case .video(let video):
            return envelope + 256 + count(video.id) + count(video.jobId) + count(video.stage) + count(video.outputURL) + count(video.title)
                + count(video.error?.code) + count(video.error?.message)
        case .none:
            return envelope
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
    private var bytes = 0
    /// Every message with a larger `seq` is here (seqs have gaps: other jobs' offsets lie between).
    private(set) var from: Int64 = 0

    /// Adds the latest message, dropping the oldest past `limit` messages or `byteLimit` bytes (the latest stays).
    mutating func append(_ entry: Entry, limit: Int, byteLimit: Int) {
        entries.append(entry)
        bytes += entry.byteCount
        while entries.count > limit || (bytes > byteLimit && entries.count > 1) {
            let dropped = entries.removeFirst()
            bytes -= dropped.byteCount
            from = dropped.seq
        }
    }

    /// Nothing up to `seq` can be replayed any more (the job started afresh, or was restored at `seq`).
    mutating func forget(through seq: Int64) {
        from = max(from, seq)
    }

    /// The messages after `lastSeq` (which must be at least `from`), oldest first; those not written yet are
    /// written now, and kept written.
    mutating func messages(after lastSeq: Int64) -> [OutboundMessage] {
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

import Foundation
import JSONSchema
import Kafka
import ProgressAggregation
import ProgressContract
import SubscriberProtocol
import Synchronization

/// Limits of the in-memory store.
public struct StoreLimits: Sendable {
    /// Messages kept per job for `resume`. Default 1000.
    public var historyPerJob: Int
    /// Bytes of messages kept per job for `resume` (the oldest go first). Default 1 MiB.
    public var historyBytesPerJob: Int
    /// Most videos included in a `job.snapshot` (the most recently updated). Default 2000.
    public var snapshotVideos: Int
    /// Most bytes of videos in a `job.snapshot` (maximum-size strings make a video tens of KiB). Default 512 KiB.
    public var snapshotBytes: Int
    /// Most jobs in a feed's `jobs.snapshot` (the most recently updated; the bytes are bounded by `snapshotBytes`). Default 1000.
    public var feedSnapshotJobs: Int
    /// Jobs held at once; an event of one more job is rejected (`limit_exceeded`). Default 10,000.
    public var maxJobs: Int
    /// Bounds on each job (videos, remembered event ids).
    public var aggregate: AggregateLimits
    /// A finished job is forgotten once its input partition's stream time is this far past its last change. Default 24 h.
    public var finishedJobRetentionMs: Int64
    /// The same for a job that has not finished (its monitor went away). Default 7 days.
    public var idleJobRetentionMs: Int64

    public init(
        historyPerJob: Int = 1000, historyBytesPerJob: Int = 1 << 20, snapshotVideos: Int = 2000, snapshotBytes: Int = 512 * 1024,
        maxJobs: Int = 10_000, aggregate: AggregateLimits = .init(), finishedJobRetentionMs: Int64 = 86_400_000,
        idleJobRetentionMs: Int64 = 604_800_000, feedSnapshotJobs: Int = 1000
    ) {
        self.feedSnapshotJobs = feedSnapshotJobs
        self.finishedJobRetentionMs = finishedJobRetentionMs
        self.idleJobRetentionMs = idleJobRetentionMs
        self.snapshotBytes = snapshotBytes
        self.historyPerJob = historyPerJob
        self.historyBytesPerJob = historyBytesPerJob
        self.snapshotVideos = snapshotVideos
        self.maxJobs = maxJobs
        self.aggregate = aggregate
    }
}

/// What the state topic needs of one job: its aggregate without videos, its `seq`, its input partition and
/// stream time, and the videos that changed since the last checkpoint.
public struct JobCheckpoint: Sendable {
    public let header: JobAggregate
    public let seq: Int64
    public let partition: TopicPartition?
    public let changedAt: Int64
    public let changedVideos: [VideoProgress]
}

/// Where an event was read: its input partition and offset. Every replica reads the same events at the same
/// positions, so what is derived from them — `seq` above all — is the same on every replica.
public struct EventOrigin: Sendable, Hashable {
    public let partition: TopicPartition
    public let offset: Int64

    public init(partition: TopicPartition, offset: Int64) {
        self.partition = partition
        self.offset = offset
    }

    /// The `seq` of the message this event causes: its offset + 1 (offsets are strictly increasing within a
    /// partition, and a job lives in one partition).
    var seq: Int64 { min(offset.adding(saturating: 1), maxSequenceNumber) }
}

/// A job the store forgot (retention), for the state topic's tombstones.
public struct ForgottenJob: Sendable {
    public let jobId: String
    public let partition: TopicPartition?
    public let videoIds: [String]
}

/// All jobs: their aggregates, the per-job `seq` (derived from input offsets), a bounded history for `resume`,
/// and their subscribers. Each job has its own lock, so jobs never wait for each other, and
/// applying an event, assigning its `seq` and fanning it out happen atomically per job
/// (a subscriber never sees a gap or a reordering between its snapshot and live events).
///
/// A job's channel can be dropped (nobody watches and nothing is known, or retention), concurrently
/// with an event or a subscriber arriving; a dropped channel is marked `removed` under its own lock,
/// and whoever finds that mark starts over with the channel now in the map — so no event is applied
/// to, and no subscriber attached to, a channel that is gone.
public final class JobStore: Sendable {
    private let channels = Mutex<[String: JobChannel]>([:])
    private let tracked = Atomic<Int>(0)
    private let partitions = Mutex<[TopicPartition: PartitionBook]>([:])
    private let forgotten = Mutex<[ForgottenJob]>([])
    /// Job-list feeds: subscribers of the job-level messages of many jobs, by subscriber; and, for a feed whose
    /// `jobs.snapshot` is being built, the latest message of each job that arrived meanwhile (each carries the job's
    /// whole progress, so the latest says everything; at most one per job).
    private let feeds = Mutex<(subscriptions: [ObjectIdentifier: FeedSubscription], held: [ObjectIdentifier: [String: OutboundMessage]])>(([:], [:]))
    /// How many feeds there are, so that ingest looks at `feeds` only when somebody watches one.
    private let feedCount = Atomic<Int>(0)
    /// Input partitions in all; `--max-jobs` is shared out over them (so every replica refuses the same jobs).
    private let partitionCount = Atomic<Int>(1)
    let limits: StoreLimits
    let metrics: BridgeMetrics

    public init(limits: StoreLimits = .init(), metrics: BridgeMetrics) {
        self.limits = limits
        self.metrics = metrics
    }

    private func channel(_ jobId: String) -> JobChannel {
        channels.withLock { map in
            if let existing = map[jobId] { return existing }
            let created = JobChannel(jobId: jobId)
            map[jobId] = created
            return created
        }
    }

    private func existingChannel(_ jobId: String) -> JobChannel? {
        channels.withLock { $0[jobId] }
    }

    /// Jobs with at least one applied event.
    public var trackedJobs: Int { tracked.load(ordering: .relaxed) }

    /// Tells the store how many input partitions there are: each may hold `maxJobs / count` jobs (rounded up).
    public func setPartitionCount(_ count: Int) {
        partitionCount.store(max(1, count), ordering: .relaxed)
    }

    /// Jobs one partition may hold.
    private var jobsPerPartition: Int {
        let count = partitionCount.load(ordering: .relaxed)
        return limits.maxJobs / count + (limits.maxJobs % count == 0 ? 0 : 1)
    }

    /// Jobs of `partition` past their retention at stream time `now` (swept or not, watched or not).
    private func countExpired(in partition: TopicPartition, at now: Int64) -> Int {
        let limits = self.limits
        let all = channels.withLock { Array($0.values) }
        return all.reduce(0) { count, channel in
            count + (channel.state.withLock { $0.partition == partition && !$0.removed && $0.isExpired(at: now, limits: limits) } ? 1 : 0)
        }
    }

    /// Where the stream time of events applied without an origin is kept.
    static let unpartitioned = TopicPartition(topic: "", partition: -1)

    /// Records the partitions' high watermarks (the offset their next record will get), so that a `last_seq` this
    /// replica has not read as far as can be told from one that names no record at all.
    public func updateHighWatermarks(_ marks: [TopicPartition: Int64]) {
        partitions.withLock { books in
            for (partition, mark) in marks { books[partition, default: PartitionBook()].highWatermark = mark }
        }
    }

    /// Jobs forgotten since the last call (retention, or a job started afresh), for the state topic's tombstones.
    public func takeForgotten() -> [ForgottenJob] {
        forgotten.withLock { list in
            defer { list = [] }
            return list
        }
    }

    /// Applies a decoded event read at `origin` and, when it changed the job, delivers it to the job's subscribers
    /// with `seq` = offset + 1. An event at or below the job's `seq` is already in its state (restored from the
    /// state topic) and reported as a duplicate. Without an origin (tests, tools) the store numbers events itself.
    /// `traceparent` (the record's, when valid) goes onto the message the event causes.
    public func apply(_ event: ProgressEvent, at origin: EventOrigin? = nil, traceparent: String? = nil) -> ApplyOutcome {
        while true {
            let channel = self.channel(event.jobId)
            guard let outcome = apply(event, at: origin, traceparent: traceparent, to: channel) else { continue }
            // A job whose first event was refused must not leave an empty channel behind (a producer could send
            // endless fresh job ids past --max-jobs).
            if case .rejected = outcome { dropIfUnused(event.jobId, channel) }
            return outcome
        }
    }

    /// Applies `event` to `aggregate` and says whether the job was and is terminal, and what the event's message says,
    /// copied now (written now only if somebody is watching — the job, or a feed for a job event —, otherwise when a
    /// resume first replays it).
    private static func applying(_ event: ProgressEvent, to aggregate: inout JobAggregate)
        -> (ApplyOutcome, wasTerminal: Bool, isTerminal: Bool, EventMessageDraft.Payload)
    {
        let wasTerminal = aggregate.isTerminal
        let (outcome, video) = aggregate.applyAndView(event)
        guard case .applied = outcome else { return (outcome, wasTerminal, wasTerminal, .none) }
        let payload: EventMessageDraft.Payload
        if event.type.isJobEvent {
            payload = .job(aggregate.progress())
        } else if let video {
            payload = .video(video)
        } else {
            payload = .none
        }
        return (outcome, wasTerminal, aggregate.isTerminal, payload)
    }

    /// Removes `channel` if nothing is known of its job and nobody watches or is attaching to it.
    private func dropIfUnused(_ jobId: String, _ channel: JobChannel) {
        channels.withLock { map in
            channel.state.withLock { s in
                if s.isUnused, !s.removed, map[jobId] === channel {
                    s.removed = true
                    map[jobId] = nil
                }
            }
        }
    }

    /// `nil`: the channel was dropped meanwhile; try again with the current one.
    private func apply(_ event: ProgressEvent, at origin: EventOrigin?, traceparent: String?, to channel: JobChannel) -> ApplyOutcome? {
        let limits = self.limits
        let book = origin?.partition ?? Self.unpartitioned
        // The partition's stream time and jobs, with one look-up (this is done for every event).
        let (bookStreamTime, jobsInPartition) = partitions.withLock { books in books[book].map { ($0.streamTime, $0.jobs) } ?? (.min, 0) }
        // The stream time with this event in it; it moves only with events that are applied: so a replica restored
        // from the state topic has the stream time of one that read everything.
        let streamTime = max(bookStreamTime, event.occurredAt)
        let jobsPerPartition = self.jobsPerPartition
        // At the cap, jobs past their retention do not count, whether or not a sweep removed them yet (and whoever
        // watches them): every replica refuses the same jobs.
        // (Counted only for a job that is new here: a flood of new job ids at the cap scans, the jobs already held do not.)
        var expiredInPartition = 0
        if let origin, jobsInPartition >= jobsPerPartition,
            channel.state.withLock({ $0.aggregate == nil || $0.isExpired(at: streamTime, limits: limits) })
        {
            expiredInPartition = countExpired(in: origin.partition, at: streamTime)
        }
        var expired: ForgottenJob?
        let result = channel.state.withLock { s -> (Handling, becameTerminal: Bool, wasNew: Bool, endedActive: Bool)? in
            if s.removed { return nil }
            if let origin, let bound = s.partition, bound != origin.partition {
                return (
                    .rejected(Rejection(.partitionMismatch, "job \(event.jobId) lives in \(bound.topic)/\(bound.partition); its events must all be in one partition (key = job_id)")),
                    false, false, false)
            }
            if let origin, s.aggregate != nil, origin.seq <= s.seq { return (.covered, false, false, false) }
            // Forgotten by retention, whether or not this replica's periodic sweep got to it yet: the same decision
            // on every replica, at the same event.
            var endedActive = false
            if s.isExpired(at: streamTime, limits: limits), let aggregate = s.aggregate {
                expired = ForgottenJob(jobId: event.jobId, partition: s.partition, videoIds: Array(aggregate.videos.keys))
                endedActive = !aggregate.isTerminal
                s.aggregate = nil
                s.dirtyVideos = []
                // What the old incarnation said can no longer be replayed: a resume from before now gets a snapshot.
                s.history.forget(through: origin.map(\.offset) ?? s.seq)
            }
            let wasNew = s.aggregate == nil
            if wasNew {
                if let origin {
                    if self.partitions.withLock({ $0[origin.partition]?.jobs ?? 0 }) - expiredInPartition >= jobsPerPartition {
                        return (
                            .rejected(Rejection(.limitExceeded, "partition \(origin.partition.partition) already holds \(jobsPerPartition) jobs (--max-jobs shared out over the input partitions)")),
                            false, false, endedActive)
                    }
                } else if self.tracked.load(ordering: .relaxed) >= limits.maxJobs {
                    return (.rejected(Rejection(.limitExceeded, "the bridge already tracks \(limits.maxJobs) jobs (--max-jobs)")), false, false, endedActive)
                }
            }
            if wasNew { s.aggregate = JobAggregate(jobId: event.jobId, firstEventAt: event.occurredAt, limits: limits.aggregate) }
            // Changed where it is stored (`!` on the stored optional): a copy would make every event copy the job's
            // whole video table (quadratic in the job's size), and taking it out and putting it back moved its ~700
            // bytes twice per event.
            let (outcome, wasTerminal, isTerminal, payload) = Self.applying(event, to: &s.aggregate!)
            guard case .applied = outcome else {
                if wasNew { s.aggregate = nil }
                return (Handling(outcome), false, false, endedActive)
            }
            if wasNew { self.tracked.add(1, ordering: .relaxed) }
            if let origin, wasNew || s.partition == nil {  // (a job restored from a record without its partition)
                s.partition = origin.partition
                self.partitions.withLock { $0[origin.partition, default: PartitionBook()].jobs += 1 }
            }
            s.lastChangedAt = streamTime
            s.seq = origin?.seq ?? s.seq.adding(saturating: 1)
            s.headerDirty = true
            if case .video = payload, let id = event.payload.videoId { s.dirtyVideos.insert(id) }
            let draft = EventMessageDraft(
                type: event.type, jobId: event.jobId, seq: s.seq, occurredAt: event.occurredAt, eventId: event.eventId, traceparent: traceparent,
                payload: payload)
            let toFeeds = event.type.isJobEvent && self.feedCount.load(ordering: .relaxed) > 0
            guard !s.subscribers.isEmpty || toFeeds else {
                s.history.append(.unwritten(draft), limit: limits.historyPerJob, byteLimit: limits.historyBytesPerJob)
                return (.applied, !wasTerminal && isTerminal, wasNew, endedActive)
            }
            let applied = draft.message()
            s.history.append(.written(applied), limit: limits.historyPerJob, byteLimit: limits.historyBytesPerJob)
            s.deliver(applied)
            // Under the job's lock, like the job's own subscribers: a feed sees each job's messages in seq order.
            if toFeeds { self.deliverToFeeds(applied, jobId: event.jobId) }
            return (.applied, !wasTerminal && isTerminal, wasNew, endedActive)
        }
        guard let (handling, becameTerminal, wasNew, endedActive) = result else { return nil }
        if handling.movesStreamTime { partitions.withLock { $0[book, default: PartitionBook()].advance(to: event.occurredAt) } }
        let outcome = handling.outcome
        if let expired {
            // The expired incarnation is gone: its records leave the state topic before the new one's are written.
            forgotten.withLock { $0.append(expired) }
            tracked.subtract(1, ordering: .relaxed)
            metrics.trackedJobs.decrement()
            if endedActive { metrics.activeJobs.decrement() }
            if let partition = expired.partition { partitions.withLock { $0[partition]?.jobs -= 1 } }
        }
        if case .applied = outcome {
            metrics.eventsApplied.increment()
            if wasNew {
                metrics.trackedJobs.increment()
                metrics.activeJobs.increment()
            }
            if becameTerminal { metrics.activeJobs.decrement() }
        }
        return outcome
    }

    /// Registers `outbox` as a subscriber of `jobId` and queues, atomically with respect to
    /// live events, either a replay of what followed `lastSeq` or a `job.snapshot`.
    public func subscribe(jobId: String, subscriber: ObjectIdentifier, outbox: Outbox, lastSeq: Int64?, now: Int64) {
        attach(jobId: jobId, subscriber: subscriber, outbox: outbox, lastSeq: lastSeq, now: now)
    }

    /// Answers a `resume` request of a subscriber: the messages after `lastSeq`, or an error and a fresh snapshot.
    public func resume(jobId: String, subscriber: ObjectIdentifier, outbox: Outbox, lastSeq: Int64, now: Int64) {
        attach(jobId: jobId, subscriber: subscriber, outbox: outbox, lastSeq: lastSeq, now: now)
    }

    /// Replays from the history when it covers `lastSeq`; otherwise builds a snapshot *outside* the job's lock
    /// (sorting and serialising a big job takes a while) from a copy of the aggregate, then attaches the
    /// subscriber under the lock with the snapshot followed by whatever was applied meanwhile (from the history).
    private func attach(jobId: String, subscriber: ObjectIdentifier, outbox: Outbox, lastSeq: Int64?, now: Int64) {
        let snapshotVideos = limits.snapshotVideos
        let snapshotBytes = limits.snapshotBytes
        for _ in 0..<4 {
            let channel = self.channel(jobId)
            enum Plan {
                case retry, done
                case snapshot(JobAggregate?, seq: Int64)
            }
            let plan = channel.state.withLock { s -> Plan in
                if s.removed { return .retry }
                if let lastSeq, lastSeq > s.seq, s.aggregate != nil, let partition = s.partition,
                    lastSeq <= self.partitions.withLock({ $0[partition]?.highWatermark ?? 0 })
                {
                    // The client saw more of this job than this replica has read yet (it came from a replica further
                    // ahead; its last_seq names a record that exists): nothing to replay; the messages it has not seen
                    // follow as this replica reads them. A last_seq beyond the partition's end gets a snapshot below.
                    s.subscribers[subscriber] = outbox
                    outbox.skip(through: lastSeq)
                    outbox.enqueue(Self.resumeMessage(jobId: jobId, from: lastSeq.adding(saturating: 1), to: lastSeq, now: now))
                    return .done
                }
                if let lastSeq, let replay = s.replay(after: lastSeq, limits: self.limits) {
                    s.subscribers[subscriber] = outbox
                    // The job's messages still on their way to the subscriber's event loop are in the replay: drop
                    // them there, or an older `job.progress` would take the place of a newer one (conflation).
                    outbox.skip(through: s.seq)
                    outbox.enqueue(Self.resumeMessage(jobId: jobId, from: lastSeq.adding(saturating: 1), to: s.seq, now: now))
                    outbox.enqueue(contentsOf: replay)
                    return .done
                }
                // Detached while its snapshot is built: meanwhile events land in the history, replayed below. Counted
                // as attaching, so that neither retention nor an unsubscribe drops the job meanwhile.
                s.subscribers[subscriber] = nil
                outbox.skip(through: s.seq)  // (the snapshot covers them)
                s.attaching += 1
                return .snapshot(s.aggregate, seq: s.seq)
            }
            let aggregate: JobAggregate?
            let seq: Int64
            switch plan {
            case .done: return
            case .retry: continue
            case .snapshot(let a, let q): (aggregate, seq) = (a, q)
            }
            let snapshot = Self.snapshot(aggregate, jobId: jobId, seq: seq, now: now, videoLimit: snapshotVideos, byteLimit: snapshotBytes)
            let attached = channel.state.withLock { s -> Bool in
                s.attaching -= 1
                guard !s.removed, let since = s.replay(after: seq, limits: self.limits) else { return false }
                s.subscribers[subscriber] = outbox
                outbox.skip(through: s.seq)  // (the snapshot and `since` cover them)
                if let lastSeq { outbox.enqueue(Self.resumeUnavailable(jobId: jobId, lastSeq: lastSeq, seq: s.seq, now: now)) }
                outbox.enqueue(snapshot)
                outbox.enqueue(contentsOf: since)
                return true
            }
            if attached { return }
        }
        // Pathological churn (the history turned over while four snapshots were built): build it under the lock.
        while true {
            let channel = self.channel(jobId)
            let attached = channel.state.withLock { s -> Bool in
                guard !s.removed else { return false }
                s.subscribers[subscriber] = outbox
                outbox.skip(through: s.seq)
                if let lastSeq { outbox.enqueue(Self.resumeUnavailable(jobId: jobId, lastSeq: lastSeq, seq: s.seq, now: now)) }
                outbox.enqueue(Self.snapshot(s.aggregate, jobId: jobId, seq: s.seq, now: now, videoLimit: snapshotVideos, byteLimit: snapshotBytes))
                return true
            }
            if attached { return }
        }
    }

    /// `resume.ok` is a control message: its `seq` is 0 like every control message's, so that a client which drops
    /// messages with a `seq` it has seen does not drop the replay that follows. The range is in `data`.
    private static func resumeMessage(jobId: String, from: Int64, to: Int64, now: Int64) -> OutboundMessage {
        .make(
            type: "resume.ok", jobId: jobId, seq: 0, ts: now, occurredAt: nil,
            data: .object(["from_seq": .number(JSONNumber(from)), "to_seq": .number(JSONNumber(to))]))
    }

    private static func resumeUnavailable(jobId: String, lastSeq: Int64, seq: Int64, now: Int64) -> OutboundMessage {
        let why =
            lastSeq > seq
            ? "last_seq \(lastSeq) is ahead of this job's seq \(seq) (the job is unknown here: forgotten, or never seen)"
            : "messages after seq \(lastSeq) are no longer kept"
        return .error(code: "resume_unavailable", message: "\(why); a fresh job.snapshot follows", jobId: jobId, now: now)
    }

    private static func snapshot(_ aggregate: JobAggregate?, jobId: String, seq: Int64, now: Int64, videoLimit: Int, byteLimit: Int) -> OutboundMessage {
        var data: JSONObject = [:]
        if let aggregate {
            // The most recently updated first, up to `videoLimit` videos and `byteLimit` bytes of them.
            var videos: [JSONValue] = []
            var bytes = 0
            for video in aggregate.videos.values.sorted(by: { ($0.updatedAt, $0.id) > ($1.updatedAt, $1.id) }).prefix(videoLimit) {
                let json = video.json
                bytes += json.serialized().utf8.count + 1
                if bytes > byteLimit, !videos.isEmpty { break }
                videos.append(json)
            }
            data["job"] = aggregate.progress().json
            data["videos"] = .array(videos)
            data["videos_total"] = .number(JSONNumber(Int64(aggregate.videos.count)))
            data["videos_truncated"] = .bool(aggregate.videos.count > videos.count)
        } else {
            // Not seen yet: the subscriber hears about it as soon as the first event arrives.
            data["job"] = .null
            data["videos"] = .array([])
            data["videos_total"] = .number(JSONNumber(Int64(0)))
            data["videos_truncated"] = .bool(false)
        }
        return .make(type: "job.snapshot", jobId: jobId, seq: seq, ts: now, occurredAt: nil, data: .object(data))
    }

    /// Registers a job-list feed: the job-level messages (`job.*`) of every job `includes` accepts, the jobs that
    /// appear later included, after one `jobs.snapshot` of their current progress. Messages applied while the
    /// snapshot is built are held and follow it, so the client sees the snapshot first and each job's messages in
    /// `seq` order (those the snapshot already covers have a `seq` it does not exceed: the client drops them); of a
    /// job that changed several times meanwhile, only the latest message follows (it carries the job's whole progress).
    public func watch(subscriber: ObjectIdentifier, outbox: Outbox, now: Int64, includes: @escaping @Sendable (String) -> Bool) {
        feeds.withLock { feeds in
            feeds.subscriptions[subscriber] = FeedSubscription(outbox: outbox, includes: includes)
            feeds.held[subscriber] = [:]
        }
        feedCount.add(1, ordering: .relaxed)
        let snapshot = feedSnapshot(includes: includes, now: now)
        feeds.withLock { feeds in
            // Queued under the lock: a message applied after this goes straight to the outbox, behind them.
            guard feeds.subscriptions[subscriber] != nil, let held = feeds.held.removeValue(forKey: subscriber) else { return }
            outbox.enqueue(snapshot)
            for message in held.values.sorted(by: { $0.seq < $1.seq }) { outbox.enqueue(message) }
        }
    }

    /// Removes a job-list feed.
    public func unwatch(subscriber: ObjectIdentifier) {
        let removed = feeds.withLock { feeds in
            feeds.held[subscriber] = nil
            return feeds.subscriptions.removeValue(forKey: subscriber) != nil
        }
        if removed { feedCount.subtract(1, ordering: .relaxed) }
    }

    /// Queues a job-level message for every feed that includes its job (called under the job's lock, which keeps a
    /// job's messages in order; the feeds' lock is held only to pick the outboxes, not while queueing).
    private func deliverToFeeds(_ message: OutboundMessage, jobId: String) {
        let outboxes = feeds.withLock { feeds -> [Outbox] in
            var live: [Outbox] = []
            for (id, feed) in feeds.subscriptions where feed.includes(jobId) {
                if feeds.held[id] != nil {
                    feeds.held[id]?[jobId] = message  // the latest per job, while the feed's snapshot is built
                } else {
                    live.append(feed.outbox)
                }
            }
            return live
        }
        for outbox in outboxes { outbox.enqueue(message) }
    }

    /// `jobs.snapshot`: `{"jobs":[{"job_id","seq","job"}…],"jobs_total","jobs_truncated"}`, the most recently updated
    /// jobs first, at most `feedSnapshotJobs` of them and `snapshotBytes` of their JSON. Each job is read under its
    /// own lock (its progress and its `seq` together); its `seq` orders it against the job's live messages.
    private func feedSnapshot(includes: (String) -> Bool, now: Int64) -> OutboundMessage {
        let all = channels.withLock { Array($0) }
        var entries: [(updatedAt: Int64, jobId: String, entry: JSONValue)] = []
        for (jobId, channel) in all where includes(jobId) {
            let entry = channel.state.withLock { s -> (Int64, JSONValue)? in
                guard !s.removed, let aggregate = s.aggregate else { return nil }
                return (
                    aggregate.lastEventAt,
                    .object(["job_id": .string(jobId), "seq": .number(JSONNumber(s.seq)), "job": aggregate.progress().json])
                )
            }
            if let (updatedAt, json) = entry { entries.append((updatedAt, jobId, json)) }
        }
        entries.sort { ($0.updatedAt, $0.jobId) > ($1.updatedAt, $1.jobId) }
        var included: [JSONValue] = []
        var bytes = 0
        for entry in entries.prefix(limits.feedSnapshotJobs) {
            bytes += entry.entry.serialized().utf8.count + 1
            if bytes > limits.snapshotBytes, !included.isEmpty { break }
            included.append(entry.entry)
        }
        return .make(
            type: "jobs.snapshot", jobId: nil, seq: 0, ts: now, occurredAt: nil,
            data: .object([
                "jobs": .array(included), "jobs_total": .number(JSONNumber(Int64(entries.count))),
                "jobs_truncated": .bool(entries.count > included.count),
            ]))
    }

    /// Removes a subscriber; forgets a job nobody watches and no event has reached.
    public func unsubscribe(jobId: String, subscriber: ObjectIdentifier) {
        guard let channel = existingChannel(jobId) else { return }
        channels.withLock { map in
            channel.state.withLock { s in
                s.subscribers[subscriber] = nil
                if s.isUnused, !s.removed, map[jobId] === channel {
                    s.removed = true
                    map[jobId] = nil
                }
            }
        }
    }

    /// Forgets jobs nobody watches whose input partition's stream time (the latest `occurred_at` applied from it)
    /// is past their last change by the retention — `finishedJobRetentionMs` for finished jobs, `idleJobRetentionMs`
    /// for the others (their monitor went away). Stream time, not the wall clock: every replica forgets a job at
    /// the same point of the stream, and a replay of old events does not make a job vanish the moment it completes.
    /// A job without a partition (no origin given) goes by the latest stream time of any partition. The forgotten
    /// jobs are also handed to `takeForgotten()`, so the state topic forgets them too.
    @discardableResult
    public func evictExpired() -> [ForgottenJob] {
        let limits = self.limits
        let clocks = partitions.withLock { $0.mapValues(\.streamTime) }
        let latest = clocks.values.max()
        let evicted: [(job: ForgottenJob, finished: Bool)] = channels.withLock { map in
            var removed: [(job: ForgottenJob, finished: Bool)] = []
            for (jobId, channel) in map {
                let expired = channel.state.withLock { s -> (ForgottenJob, Bool)? in
                    guard s.subscribers.isEmpty, s.attaching == 0, let aggregate = s.aggregate else { return nil }
                    guard let now = s.partition.flatMap({ clocks[$0] }) ?? latest, s.isExpired(at: now, limits: limits) else { return nil }
                    s.removed = true
                    return (ForgottenJob(jobId: jobId, partition: s.partition, videoIds: Array(aggregate.videos.keys)), aggregate.isTerminal)
                }
                if let (job, finished) = expired { removed.append((job, finished)) }
            }
            for entry in removed { map[entry.job.jobId] = nil }
            return removed
        }
        for entry in evicted {
            tracked.subtract(1, ordering: .relaxed)
            metrics.trackedJobs.decrement()
            if !entry.finished { metrics.activeJobs.decrement() }
            if let partition = entry.job.partition { partitions.withLock { $0[partition]?.jobs -= 1 } }
        }
        let jobs = evicted.map(\.job)
        if !jobs.isEmpty { forgotten.withLock { $0 += jobs } }
        return jobs
    }

    /// What changed in a job since its last checkpoint, as one consistent snapshot; clears the change marks.
    /// If writing it fails, give the marks back with `markChanged`.
    public func takeCheckpoint(_ jobId: String) -> JobCheckpoint? {
        guard let channel = existingChannel(jobId) else { return nil }
        let taken = channel.state.withLock { s -> (JobAggregate, Int64, TopicPartition?, Int64, Set<String>)? in
            guard !s.removed, let aggregate = s.aggregate else { return nil }
            defer {
                s.dirtyVideos = []
                s.headerDirty = false
            }
            return (aggregate, s.seq, s.partition, s.lastChangedAt, s.dirtyVideos)
        }
        guard let (aggregate, seq, partition, changedAt, dirty) = taken else { return nil }
        // Encoding happens outside the lock, on the copy.
        return JobCheckpoint(
            header: aggregate.withoutVideos(), seq: seq, partition: partition,
            changedAt: changedAt, changedVideos: dirty.compactMap { aggregate.videos[$0] })
    }

    /// Marks videos of a job as changed again (their checkpoint was not written).
    public func markChanged(_ jobId: String, videoIds: some Sequence<String>) {
        existingChannel(jobId)?.state.withLock { s in
            s.headerDirty = true
            s.dirtyVideos.formUnion(videoIds)
        }
    }

    /// Installs a restored job (before consumption starts): its `seq` (events up to it are in the aggregate), its
    /// input partition and the stream time of its last change (both unknown in records of older versions).
    public func restore(_ aggregate: JobAggregate, seq: Int64, partition: TopicPartition? = nil, changedAt: Int64? = nil) {
        let channel = self.channel(aggregate.jobId)
        let changedAt = changedAt ?? aggregate.lastEventAt
        let isNew = channel.state.withLock { s -> Bool in
            let isNew = s.aggregate == nil
            s.aggregate = aggregate
            s.lastChangedAt = changedAt
            s.seq = max(s.seq, min(max(0, seq), maxSequenceNumber))
            s.history.forget(through: s.seq)  // nothing before the restored state can be replayed
            if isNew, let partition { s.partition = partition }
            return isNew
        }
        if let partition {
            partitions.withLock { books in
                books[partition, default: PartitionBook()].advance(to: changedAt)
                if isNew { books[partition]?.jobs += 1 }
            }
        }
        if isNew {
            tracked.add(1, ordering: .relaxed)
            metrics.trackedJobs.increment()
            if !aggregate.isTerminal { metrics.activeJobs.increment() }
        }
    }

    /// Closes every subscriber's outbox (their writers then send the close frame for `reason`).
    public func closeAllSubscribers(_ reason: OutboxClosure) {
        let all = channels.withLock { Array($0.values) }
        for channel in all {
            for outbox in channel.state.withLock({ Array($0.subscribers.values) }) { outbox.close(reason) }
        }
        for feed in feeds.withLock({ Array($0.subscriptions.values) }) { feed.outbox.close(reason) }
    }

    /// Subscribers currently registered, over all jobs, feeds included.
    public var subscriberCount: Int {
        let all = channels.withLock { Array($0.values) }
        return all.reduce(feedCount.load(ordering: .relaxed)) { $0 + $1.state.withLock { $0.subscribers.count } }
    }

    /// Channels held, including those of jobs that only have subscribers (for tests: they must not leak).
    var channelCount: Int { channels.withLock { $0.count } }

    /// The aggregate of a job, if any event of it was applied. A copy: holding it makes the job's next event copy
    /// its whole video table, so the request paths use `read` instead.
    public func aggregate(_ jobId: String) -> JobAggregate? {
        existingChannel(jobId)?.state.withLock { $0.aggregate }
    }

    /// `body` applied to a job's aggregate under its lock, without keeping a copy; nil when the job is unknown.
    public func read<T: Sendable>(_ jobId: String, _ body: (JobAggregate) -> T) -> T? {
        existingChannel(jobId)?.state.withLock { s in s.aggregate == nil ? nil : Self.reading(&s.aggregate!, body) }
    }

    /// `body` applied to every job's aggregate, each under its lock, without keeping copies.
    public func readAll<T: Sendable>(_ body: (JobAggregate) -> T?) -> [T] {
        let all = channels.withLock { Array($0.values) }
        return all.compactMap { channel in channel.state.withLock { s in s.aggregate == nil ? nil : Self.reading(&s.aggregate!, body) } }
    }

    /// `body` on the aggregate where it is stored. (`Optional.map` on it made a copy first: a retain and a release of
    /// each of its fields, under the job's lock — `perf` showed it in ingest, for readers polling every job.)
    private static func reading<T>(_ aggregate: inout JobAggregate, _ body: (JobAggregate) -> T) -> T { body(aggregate) }
}

/// What applying an event did, inside the store.
private enum Handling {
    case applied
    /// At or below the job's `seq`: already in its state (restored from the state topic).
    case covered
    case other(ApplyOutcome)

    init(_ outcome: ApplyOutcome) {
        self = outcome == .applied ? .applied : .other(outcome)
    }

    static func rejected(_ rejection: Rejection) -> Handling { .other(.rejected(rejection)) }

    var outcome: ApplyOutcome {
        switch self {
        case .applied: .applied
        case .covered: .duplicate
        case .other(let outcome): outcome
        }
    }

    /// Only applied events move the stream time: a covered one was applied before the state it was restored from,
    /// whose stream time came back with it (and on a replica that read it, it may have been a duplicate).
    var movesStreamTime: Bool {
        switch self {
        case .applied: true
        case .covered, .other: false
        }
    }
}

/// A job-list feed: its outbox and which jobs it carries.
private struct FeedSubscription {
    let outbox: Outbox
    let includes: @Sendable (String) -> Bool
}

/// What the store knows of one input partition: its jobs (for the per-partition cap) and its stream time.
struct PartitionBook {
    var jobs = 0
    /// The offset the partition's next record will get, as last seen.
    var highWatermark: Int64 = 0
    /// The latest `occurred_at` applied from the partition (ms).
    var streamTime: Int64 = .min

    mutating func advance(to occurredAt: Int64) { streamTime = max(streamTime, occurredAt) }
}

/// One job's state and subscribers, behind its own lock.
final class JobChannel: Sendable {
    struct State {
        var aggregate: JobAggregate?
        /// The `seq` of the job's latest message: the input offset + 1 of its latest applied event.
        var seq: Int64 = 0
        /// The input partition the job's events come from (all of them: key = job id).
        var partition: TopicPartition?
        /// The latest messages, for `resume`.
        var history = JobHistory()
        var subscribers: [ObjectIdentifier: Outbox] = [:] {
            didSet { audience = nil }
        }
        /// The subscribers grouped by the event loop queue that delivers them (`Outbox.route`; `nil`: none), made
        /// when a message is delivered after they changed: a message is one post per event loop, not one per subscriber.
        private var audience: [(route: SubscriberChannelDrain.LoopDrains?, outboxes: [Outbox])]?
        /// The partition's stream time (ms) when the job last changed — for retention only, never for metrics.
        var lastChangedAt: Int64 = 0
        /// Dropped from the store: whoever finds this starts over with the current channel.
        var removed = false
        /// Subscribers detached while their snapshot is built (they come back).
        var attaching = 0
        /// Changed since the last checkpoint.
        var headerDirty = false
        var dirtyVideos = Set<String>()

        /// Nothing is known of the job and nobody watches it (or is about to).
        var isUnused: Bool { aggregate == nil && subscribers.isEmpty && attaching == 0 }

        /// Queues `message` for every subscriber that does not have it yet (see `Outbox.skip(through:)`): one post to
        /// each event loop that delivers some of them, in the order of the job's messages.
        mutating func deliver(_ message: OutboundMessage) {
            if audience == nil {
                var groups: [ObjectIdentifier?: (route: SubscriberChannelDrain.LoopDrains?, outboxes: [Outbox])] = [:]
                for outbox in subscribers.values {
                    groups[outbox.route.map(ObjectIdentifier.init), default: (outbox.route, [])].outboxes.append(outbox)
                }
                audience = Array(groups.values)
            }
            for (route, outboxes) in audience! {
                if let route {
                    route.post(message, to: outboxes)
                } else {
                    for outbox in outboxes { outbox.enqueueJobMessage(message, direct: false) }
                }
            }
        }

        /// Whether retention forgets the job at stream time `now`.
        func isExpired(at now: Int64, limits: StoreLimits) -> Bool {
            // Read through the optional, not bound: binding the aggregate copies it (every event asks this).
            guard aggregate != nil else { return false }
            let retention = (aggregate?.isTerminal ?? false) ? limits.finishedJobRetentionMs : limits.idleJobRetentionMs
            return now.subtracting(saturating: lastChangedAt) > retention
        }

        /// The messages after `lastSeq` when the history still has all of them (or none are missing); `nil` when
        /// it does not, or when `lastSeq` is ahead of the job (then only a snapshot helps).
        mutating func replay(after lastSeq: Int64, limits: StoreLimits) -> [OutboundMessage]? {
            if lastSeq == seq { return [] }
            guard lastSeq >= 0, lastSeq < seq, lastSeq >= history.from else { return nil }
            return history.messages(after: lastSeq, limit: limits.historyPerJob, byteLimit: limits.historyBytesPerJob)
        }
    }

    let jobId: String
    let state = Mutex(State())

    init(jobId: String) {
        self.jobId = jobId
    }
}

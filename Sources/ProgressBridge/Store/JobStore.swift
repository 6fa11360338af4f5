import DequeModule
import Foundation
import JSONSchema
import ProgressAggregation
import ProgressContract
import Synchronization

/// Limits of the in-memory store.
public struct StoreLimits: Sendable {
    /// Messages kept per job for `resume`. Default 1000.
    public var historyPerJob: Int
    /// Most videos included in a `job.snapshot` (the most recently updated). Default 2000.
    public var snapshotVideos: Int

    public init(historyPerJob: Int = 1000, snapshotVideos: Int = 2000) {
        self.historyPerJob = historyPerJob
        self.snapshotVideos = snapshotVideos
    }
}

/// All jobs: their aggregates, the bridge's per-job `seq`, a bounded history for `resume`,
/// and their subscribers. Each job has its own lock, so jobs never wait for each other, and
/// applying an event, assigning its `seq` and fanning it out happen atomically per job
/// (a subscriber never sees a gap or a reordering between its snapshot and live events).
public final class JobStore: Sendable {
    private let channels = Mutex<[String: JobChannel]>([:])
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

    /// Applies a decoded event and, when it changed the job, delivers it to the job's subscribers.
    public func apply(_ event: ProgressEvent) -> ApplyOutcome {
        let channel = self.channel(event.jobId)
        let historyLimit = limits.historyPerJob
        let (outcome, becameTerminal, wasNew) = channel.state.withLock { s -> (ApplyOutcome, Bool, Bool) in
            let wasNew = s.aggregate == nil
            var aggregate = s.aggregate ?? JobAggregate(jobId: event.jobId, firstEventAt: event.occurredAt)
            let wasTerminal = aggregate.state?.isTerminal ?? false
            let outcome = aggregate.apply(event)
            guard case .applied = outcome else { return (outcome, false, false) }
            s.aggregate = aggregate
            s.lastChangedAt = WallClock.nowMs()
            s.seq += 1
            let data: JSONValue
            if event.type.isJobEvent {
                data = aggregate.progress().json
            } else if let id = event.payload.videoId, let video = aggregate.videos[id] {
                data = video.json
            } else {
                data = .null
            }
            let message = OutboundMessage.make(
                type: event.type.rawValue, jobId: event.jobId, seq: s.seq, ts: event.occurredAt, occurredAt: event.occurredAt,
                data: data, extra: ["event_id": .string(event.eventId)])
            s.history.append(message)
            if s.history.count > historyLimit { s.history.removeFirst() }
            for outbox in s.subscribers.values { outbox.enqueue(message) }
            let isTerminal = aggregate.state?.isTerminal ?? false
            return (outcome, !wasTerminal && isTerminal, wasNew)
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
        let channel = self.channel(jobId)
        let snapshotVideos = limits.snapshotVideos
        channel.state.withLock { s in
            s.subscribers[subscriber] = outbox
            Self.catchUp(&s, jobId: jobId, outbox: outbox, lastSeq: lastSeq, now: now, snapshotVideos: snapshotVideos)
        }
    }

    /// Answers a `resume` request: the messages after `lastSeq`, or an error and a fresh snapshot.
    public func resume(jobId: String, outbox: Outbox, lastSeq: Int64, now: Int64) {
        let channel = self.channel(jobId)
        let snapshotVideos = limits.snapshotVideos
        channel.state.withLock { s in
            Self.catchUp(&s, jobId: jobId, outbox: outbox, lastSeq: lastSeq, now: now, snapshotVideos: snapshotVideos)
        }
    }

    private static func catchUp(_ s: inout JobChannel.State, jobId: String, outbox: Outbox, lastSeq: Int64?, now: Int64, snapshotVideos: Int) {
        if let lastSeq {
            let oldest = s.history.first?.seq ?? (s.seq + 1)
            if lastSeq >= s.seq {
                outbox.enqueue(resumeMessage(jobId: jobId, from: lastSeq + 1, to: s.seq, now: now))
                return
            }
            if lastSeq >= 0, lastSeq + 1 >= oldest {
                outbox.enqueue(resumeMessage(jobId: jobId, from: lastSeq + 1, to: s.seq, now: now))
                outbox.enqueue(contentsOf: s.history.lazy.filter { $0.seq > lastSeq })
                return
            }
            outbox.enqueue(
                .error(
                    code: "resume_unavailable",
                    message: "messages after seq \(lastSeq) are no longer kept (oldest kept: \(oldest)); a fresh job.snapshot follows",
                    jobId: jobId, now: now))
        }
        outbox.enqueue(snapshot(s, jobId: jobId, now: now, videoLimit: snapshotVideos))
    }

    private static func resumeMessage(jobId: String, from: Int64, to: Int64, now: Int64) -> OutboundMessage {
        .make(
            type: "resume.ok", jobId: jobId, seq: to, ts: now, occurredAt: nil,
            data: .object(["from_seq": .number(JSONNumber(from)), "to_seq": .number(JSONNumber(to))]))
    }

    private static func snapshot(_ s: JobChannel.State, jobId: String, now: Int64, videoLimit: Int) -> OutboundMessage {
        var data: JSONObject = [:]
        if let aggregate = s.aggregate {
            let videos = aggregate.videos.values.sorted { ($0.updatedAt, $0.id) > ($1.updatedAt, $1.id) }
            data["job"] = aggregate.progress().json
            data["videos"] = .array(videos.prefix(videoLimit).map(\.json))
            data["videos_total"] = .number(JSONNumber(Int64(videos.count)))
            data["videos_truncated"] = .bool(videos.count > videoLimit)
        } else {
            // Not seen yet: the subscriber hears about it as soon as the first event arrives.
            data["job"] = .null
            data["videos"] = .array([])
            data["videos_total"] = .number(JSONNumber(Int64(0)))
            data["videos_truncated"] = .bool(false)
        }
        return .make(type: "job.snapshot", jobId: jobId, seq: s.seq, ts: now, occurredAt: nil, data: .object(data))
    }

    /// Removes a subscriber; forgets a job nobody watches and no event has reached.
    public func unsubscribe(jobId: String, subscriber: ObjectIdentifier) {
        guard let channel = existingChannel(jobId) else { return }
        let empty = channel.state.withLock { s -> Bool in
            s.subscribers[subscriber] = nil
            return s.subscribers.isEmpty && s.aggregate == nil
        }
        if empty {
            channels.withLock { map in
                if let current = map[jobId], current === channel, current.state.withLock({ $0.subscribers.isEmpty && $0.aggregate == nil }) {
                    map[jobId] = nil
                }
            }
        }
    }

    /// Forgets jobs that nobody watches and that this bridge last changed before a cutoff (wall clock, ms):
    /// `finishedBefore` for finished jobs, `idleBefore` for the others (their monitor went away). Wall-clock
    /// time, so a replay of old events does not make a job vanish the moment it completes.
    /// Returns their ids, so the state topic can forget them too.
    public func evict(finishedBefore finishedCutoffMs: Int64, idleBefore idleCutoffMs: Int64) -> [String] {
        let evicted: [(jobId: String, finished: Bool)] = channels.withLock { map in
            var removed: [(jobId: String, finished: Bool)] = []
            for (jobId, channel) in map {
                let expired = channel.state.withLock { s -> Bool? in
                    guard s.subscribers.isEmpty, let aggregate = s.aggregate else { return nil }
                    let finished = aggregate.state?.isTerminal ?? false
                    return s.lastChangedAt < (finished ? finishedCutoffMs : idleCutoffMs) ? finished : nil
                }
                if let finished = expired { removed.append((jobId, finished)) }
            }
            for job in removed { map[job.jobId] = nil }
            return removed
        }
        for job in evicted {
            metrics.trackedJobs.decrement()
            if !job.finished { metrics.activeJobs.decrement() }
        }
        return evicted.map(\.jobId)
    }

    /// The job's aggregate and the bridge's `seq` for it, as one consistent snapshot.
    public func checkpoint(_ jobId: String) -> (aggregate: JobAggregate, seq: Int64)? {
        existingChannel(jobId)?.state.withLock { s in s.aggregate.map { ($0, s.seq) } }
    }

    /// Installs a restored job (before consumption starts).
    public func restore(_ aggregate: JobAggregate, seq: Int64) {
        let channel = self.channel(aggregate.jobId)
        let isNew = channel.state.withLock { s -> Bool in
            let isNew = s.aggregate == nil
            s.aggregate = aggregate
            s.lastChangedAt = WallClock.nowMs()
            s.seq = max(s.seq, seq)
            return isNew
        }
        if isNew {
            metrics.trackedJobs.increment()
            if !(aggregate.state?.isTerminal ?? false) { metrics.activeJobs.increment() }
        }
    }

    /// Closes every subscriber's outbox (their writers then send the close frame for `reason`).
    public func closeAllSubscribers(_ reason: OutboxClosure) {
        let all = channels.withLock { Array($0.values) }
        for channel in all {
            for outbox in channel.state.withLock({ Array($0.subscribers.values) }) { outbox.close(reason) }
        }
    }

    /// Subscribers currently registered, over all jobs.
    public var subscriberCount: Int {
        let all = channels.withLock { Array($0.values) }
        return all.reduce(0) { $0 + $1.state.withLock { $0.subscribers.count } }
    }

    /// The aggregate of a job, if any event of it was applied.
    public func aggregate(_ jobId: String) -> JobAggregate? {
        existingChannel(jobId)?.state.withLock { $0.aggregate }
    }

    /// The aggregates of all jobs that have events.
    public func allAggregates() -> [JobAggregate] {
        let all = channels.withLock { Array($0.values) }
        return all.compactMap { $0.state.withLock { $0.aggregate } }
    }
}

/// One job's state and subscribers, behind its own lock.
final class JobChannel: Sendable {
    struct State {
        var aggregate: JobAggregate?
        var seq: Int64 = 0
        var history = Deque<OutboundMessage>()
        var subscribers: [ObjectIdentifier: Outbox] = [:]
        /// Wall-clock time (ms) this bridge last changed the job — for retention only, never for metrics.
        var lastChangedAt: Int64 = 0
    }

    let jobId: String
    let state = Mutex(State())

    init(jobId: String) {
        self.jobId = jobId
    }
}

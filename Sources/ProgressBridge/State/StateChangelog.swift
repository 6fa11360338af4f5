import Foundation
import Kafka
import Logging
import ProgressAggregation

/// Job state kept in Kafka itself, meant for a compacted topic, in records small enough for any job size:
///
/// - key `JOB_ID`: the job's header — its aggregate without videos (details, state, counts from the monitor,
///   the latest event ids), its `seq` (input offset + 1 of the latest event in it), its input partition and the
///   partition's stream time at its last change;
/// - key `JOB_ID/v/VIDEO_ID`: one video.
///
/// A checkpoint writes the header of each job that changed and only the videos that changed, and waits for
/// every acknowledgement before the interval's offsets are committed; so after a crash the bridge restores
/// the records and re-reads only events they may lack (applying is idempotent). A job of 100,000 videos, or
/// of many maximum-size error messages, is 100,000 small records, never one record over Kafka's message size.
/// Forgetting a job writes tombstones for its header and every video. (Job ids cannot contain `/`.)
public struct StateChangelog: Sendable {
    /// The header record's value.
    struct Header: Codable {
        /// 3: `seq` is the input offset + 1 of the job's latest event, with `partition` and `changedAt`.
        /// 2 (before several replicas): `seq` was a count of the job's messages, at most that offset + 1 — read as
        /// such, it only lets a few already-applied events be applied again (harmless: applying is idempotent).
        var version = 3
        var seq: Int64
        var aggregate: JobAggregate
        var partition: PartitionRef?
        var changedAt: Int64?
    }

    /// An input partition, as a header names it.
    struct PartitionRef: Codable {
        var topic: String
        var partition: Int32
    }

    let producer: KafkaProducer
    public let topic: String

    public init(producer: KafkaProducer, topic: String) {
        self.producer = producer
        self.topic = topic
    }

    static func videoKey(_ jobId: String, _ videoId: String) -> [UInt8] { Array("\(jobId)/v/\(videoId)".utf8) }

    /// Writes the changes of `jobs` and tombstones for `forgotten`, and waits for every acknowledgement.
    /// On failure the change marks of `jobs` are given back to the store, so the next checkpoint writes them again.
    /// Returns the number of records written.
    @discardableResult
    func write(_ jobs: some Collection<String>, forgotten: [ForgottenJob] = [], from store: JobStore) async throws -> Int {
        let encoder = JSONEncoder()
        var records: [KafkaRecord] = []
        var headers: [KafkaRecord] = []
        var taken: [String: [String]] = [:]  // the change marks taken, given back if the write fails
        for job in forgotten {
            headers.append(KafkaRecord(topic: topic, key: Array(job.jobId.utf8), value: nil))
            for videoId in job.videoIds { records.append(KafkaRecord(topic: topic, key: Self.videoKey(job.jobId, videoId), value: nil)) }
        }
        do {
            for jobId in jobs {
                guard let checkpoint = store.takeCheckpoint(jobId) else { continue }
                taken[jobId] = checkpoint.changedVideos.map(\.id)
                for video in checkpoint.changedVideos {
                    records.append(KafkaRecord(topic: topic, key: Self.videoKey(jobId, video.id), value: Array(try encoder.encode(video))))
                }
                let header = try encoder.encode(
                    Header(
                        seq: checkpoint.seq, aggregate: checkpoint.header,
                        partition: checkpoint.partition.map { PartitionRef(topic: $0.topic, partition: $0.partition) }, changedAt: checkpoint.changedAt))
                headers.append(KafkaRecord(topic: topic, key: Array(jobId.utf8), value: Array(header)))
            }
            // Videos first, headers after — tombstones too: a forgotten job's videos can never outlive its header's
            // tombstone. A crash in between leaves at most a new job's videos without its header; its offsets were
            // not committed, so its events are read again and its header follows with the next checkpoint.
            try await producer.sendAll(records)
            try await producer.sendAll(headers)
            return records.count + headers.count
        } catch {
            for (jobId, videoIds) in taken { store.markChanged(jobId, videoIds: videoIds) }
            throw error
        }
    }

    /// What a restore found.
    struct Restored {
        /// Jobs restored.
        var jobs = 0
        /// Video records whose job has no header: a crash between a new job's first video records and its header
        /// (its events are read again, and its next checkpoint writes the header). Ignored; counted in the log.
        var orphans: [(jobId: String, videoIds: [String])] = []
    }

    /// Reads the whole changelog into `store`; the latest record of each key wins, a tombstone deletes.
    static func restore(
        into store: JobStore, bootstrapServers: String, topic: String, properties: KafkaProperties, limits: AggregateLimits, logger: Logger
    ) async throws -> Restored {
        let reader = try KafkaTopicReader(bootstrapServers: bootstrapServers, topic: topic, properties: properties, logger: logger)
        let decoder = JSONDecoder()
        var headers: [String: Header] = [:]
        var videos: [String: [String: VideoProgress]] = [:]
        var records = 0
        var unreadable = 0
        let consistent = try await reader.readAll { message in
            records += 1
            guard let key = message.key.map({ String(decoding: $0, as: UTF8.self) }) else { return }
            let parts = key.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
            let jobId = String(parts[0])
            do {
                if parts.count == 3, parts[1] == "v" {
                    let videoId = String(parts[2])
                    if message.isTombstone {
                        videos[jobId]?[videoId] = nil
                    } else {
                        let video = try decoder.decode(VideoProgress.self, from: Data(message.value))
                        guard video.jobId == jobId, video.id == videoId else { throw StateRecordError.keyMismatch }
                        videos[jobId, default: [:]][videoId] = video
                    }
                } else if parts.count == 1 {
                    if message.isTombstone {
                        headers[jobId] = nil  // the job was forgotten on purpose (retention)
                    } else {
                        let header = try decoder.decode(Header.self, from: Data(message.value))
                        guard header.version == 2 || header.version == 3, header.aggregate.jobId == jobId else { throw StateRecordError.keyMismatch }
                        headers[jobId] = header
                    }
                } else {
                    throw StateRecordError.keyMismatch
                }
            } catch {
                unreadable += 1
                if unreadable <= 5 {
                    logger.error("unreadable state record skipped", metadata: ["key": "\(key.prefix(260))", "offset": "\(message.offset)", "error": "\(error)"])
                }
            }
        }
        for (jobId, header) in headers {
            var aggregate = header.aggregate
            aggregate.restore(videos: videos[jobId]?.values.map { $0 } ?? [], limits: limits)
            store.restore(
                aggregate, seq: header.seq, partition: header.partition.map { TopicPartition(topic: $0.topic, partition: $0.partition) },
                changedAt: header.changedAt)
        }
        if !consistent {
            logger.warning(
                "the state topic kept changing while it was read: a restored job may lack a video record written in the last moments (its events are read again only if their offsets were not committed)",
                metadata: ["topic": "\(topic)"])
        }
        let orphans = videos.filter { headers[$0.key] == nil && !$0.value.isEmpty }.map { (jobId: $0.key, videoIds: Array($0.value.keys)) }
        logger.info(
            "state restored",
            metadata: [
                "topic": "\(topic)", "records": "\(records)", "jobs": "\(headers.count)", "unreadable": "\(unreadable)",
                "orphaned_video_records": "\(orphans.reduce(0) { $0 + $1.videoIds.count })",
            ])
        return Restored(jobs: headers.count, orphans: orphans)
    }
}

/// A state record whose key and content disagree.
enum StateRecordError: Error {
    case keyMismatch
}

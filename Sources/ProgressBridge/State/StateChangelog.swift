import Foundation
import Kafka
import Logging
import ProgressAggregation

/// Job state kept in Kafka itself: one record per job (key = job id, value = a snapshot of its
/// aggregate and the bridge's `seq`), meant for a compacted topic. Snapshots of the jobs an
/// interval changed are written — and acknowledged — before that interval's offsets are
/// committed, so after a crash the bridge restores the snapshots and re-reads only events the
/// snapshots may lack; duplicates among those are recognised by `event_id`.
public struct StateChangelog: Sendable {
    /// The snapshot format.
    struct Snapshot: Codable {
        var version = 1
        var seq: Int64
        var aggregate: JobAggregate
    }

    let producer: KafkaProducer
    public let topic: String
    /// Event ids kept per job in a snapshot (redeliveries beyond them are idempotent anyway).
    var eventIdsPerSnapshot = 2_000

    public init(producer: KafkaProducer, topic: String) {
        self.producer = producer
        self.topic = topic
    }

    /// Writes the snapshots of `jobs` and tombstones for `forgotten`, and waits for every acknowledgement.
    func write(_ jobs: Set<String>, forgotten: Set<String> = [], from store: JobStore) async throws {
        let encoder = JSONEncoder()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for jobId in forgotten {
                group.addTask { try await producer.send(topic: topic, key: Array(jobId.utf8), value: nil) }
            }
            for jobId in jobs {
                guard let (aggregate, seq) = store.checkpoint(jobId) else { continue }
                let value = try encoder.encode(Snapshot(seq: seq, aggregate: aggregate.compacted(keepingEventIds: eventIdsPerSnapshot)))
                group.addTask {
                    try await producer.send(topic: topic, key: Array(jobId.utf8), value: Array(value))
                }
            }
            try await group.waitForAll()
        }
    }

    /// Reads the whole changelog into `store`; the latest snapshot of each job wins.
    static func restore(into store: JobStore, bootstrapServers: String, topic: String, properties: KafkaProperties, logger: Logger) async throws -> Int {
        let reader = try KafkaTopicReader(bootstrapServers: bootstrapServers, topic: topic, properties: properties, logger: logger)
        let decoder = JSONDecoder()
        var latest: [String: Snapshot] = [:]
        var records = 0
        try await reader.readAll { message in
            records += 1
            guard let key = message.key.map({ String(decoding: $0, as: UTF8.self) }) else { return }
            if message.isTombstone {
                latest[key] = nil  // the job was forgotten on purpose (retention)
                return
            }
            do {
                latest[key] = try decoder.decode(Snapshot.self, from: Data(message.value))
            } catch {
                logger.error("unreadable state snapshot skipped", metadata: ["job_id": "\(key.prefix(130))", "offset": "\(message.offset)", "error": "\(error)"])
            }
        }
        for snapshot in latest.values { store.restore(snapshot.aggregate, seq: snapshot.seq) }
        logger.info("state restored", metadata: ["topic": "\(topic)", "records": "\(records)", "jobs": "\(latest.count)"])
        return latest.count
    }
}

import CRdKafka
import Foundation
import JSONSchema
import Kafka
import Logging
import NIOPosix
import ProgressAggregation
import ProgressBridge
import ProgressContract
import ServiceLifecycle

/// The harness's own log (librdkafka's complaints, mostly).
let logger = Logger(label: "bridge-benchmark")

/// A workload: `jobs` jobs of `videos` videos each, their events interleaved as a busy monitor sends them.
struct Workload {
    let name: String
    let jobs: Int
    let videos: Int

    var eventsPerJob: Int { 3 + videos * 3 }
    var total: Int { jobs * eventsPerJob }

    func records(topic: String) -> [KafkaRecord] {
        var streams: [[KafkaRecord]] = []
        for j in 0..<jobs {
            let job = "job_bench_\(name)_\(j)"
            var events: [String] = []
            var n = 0
            func event(_ type: String, _ data: String, at ms: Int) {
                n += 1
                let seconds = ms / 1000
                let stamp = String(format: "2026-11-24T%02d:%02d:%02d.%03dZ", 10 + seconds / 3600, (seconds / 60) % 60, seconds % 60, ms % 1000)
                events.append(
                    #"{"schema_version":1,"event_id":"\#(job)-\#(n)","type":"\#(type)","job_id":"\#(job)","occurred_at":"\#(stamp)","seq":\#(n),"data":\#(data)}"#)
            }
            event("job.state_changed", #"{"from":null,"to":"pending","job":{"title":"Benchmark job","total_videos":\#(videos),"processing_deadline_ms":3600000,"priority":"high"}}"#, at: 0)
            event("job.state_changed", #"{"from":"pending","to":"running"}"#, at: 1)
            for v in 0..<videos {
                let video = "vid_\(v)"
                event("video.created", #"{"video_id":"\#(video)","row_index":\#(v + 2),"title":"Video \#(v)"}"#, at: 2 + v)
                event("video.updated", #"{"video_id":"\#(video)","state":"processing","progress_percent":50,"stage":"render","attempt":1}"#, at: 3 + v)
                event("video.completed", #"{"video_id":"\#(video)","processing_ms":48210,"attempt":1,"output_url":"s3://content-outputs/\#(job)/\#(video).mp4"}"#, at: 4 + v)
            }
            event("job.completed", "{}", at: 5 + videos)
            streams.append(events.map { KafkaRecord(topic: topic, key: Array(job.utf8), value: Array($0.utf8)) })
        }
        var interleaved: [KafkaRecord] = []
        interleaved.reserveCapacity(total)
        for i in 0..<eventsPerJob {
            for stream in streams { interleaved.append(stream[i]) }
        }
        return interleaved
    }
}

/// A plain librdkafka consumer (no group membership used; `fetch.wait.max.ms=10`, as the bridge is run), polled
/// through its consumer queue; the caller assigns partitions and destroys it.
func makeRawConsumer(bootstrap: String) -> OpaquePointer {
    var errorBuffer = [CChar](repeating: 0, count: 512)
    let conf = rd_kafka_conf_new()!
    for (key, value) in [
        ("bootstrap.servers", bootstrap), ("group.id", "raw-\(UUID().uuidString)"), ("enable.auto.commit", "false"),
        ("fetch.wait.max.ms", "10"), ("enable.partition.eof", "false"),
    ] {
        _ = rd_kafka_conf_set(conf, key, value, &errorBuffer, errorBuffer.count)
    }
    let consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &errorBuffer, errorBuffer.count)!
    rd_kafka_poll_set_consumer(consumer)
    return consumer
}

/// What one ingest run measured, from its first record to its last.
struct IngestRate {
    var eventsPerSecond: Double
    /// CPU time of this whole process per event, in µs: the consumer's and the mock cluster's threads (and, for the
    /// bridge, its ingest), all on the same two cores.
    var cpuMicrosecondsPerEvent: Double
}

/// Reads every record of `topic` with librdkafka alone, fetching and freeing them.
func rawConsume(bootstrap: String, topic: String, partitions: Int32, total: Int) -> IngestRate {
    let consumer = makeRawConsumer(bootstrap: bootstrap)
    defer { rd_kafka_destroy(consumer) }
    let queue = rd_kafka_queue_get_consumer(consumer)!
    defer { rd_kafka_queue_destroy(queue) }
    let list = rd_kafka_topic_partition_list_new(partitions)!
    for p in 0..<partitions { rd_kafka_topic_partition_list_add(list, topic, p)!.pointee.offset = 0 }
    rd_kafka_assign(consumer, list)
    rd_kafka_topic_partition_list_destroy(list)
    var buffer = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: 1000)
    var seen = 0
    var bytes = 0
    // Timed from the first record to the last, as the bridge is: connecting and the first fetch are start-up.
    var started: ContinuousClock.Instant?
    var cpuAtStart = 0.0
    var seenBeforeStart = 0
    while seen < total {
        let count = rd_kafka_consume_batch_queue(queue, 100, &buffer, buffer.count)
        for i in 0..<max(0, count) {
            guard let message = buffer[i] else { continue }
            if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                seen += 1
                bytes += message.pointee.len
            }
            rd_kafka_message_destroy(message)
        }
        if started == nil, seen > 0 {
            started = .now
            cpuAtStart = harnessCPUSeconds()
            seenBeforeStart = seen
        }
    }
    let elapsed = ContinuousClock.now - started!
    let events = Double(total - seenBeforeStart)
    _ = bytes
    return IngestRate(eventsPerSecond: events / seconds(elapsed), cpuMicrosecondsPerEvent: (harnessCPUSeconds() - cpuAtStart) * 1e6 / events)
}

/// `CLOCK_MONOTONIC` in seconds: the clock of `perf record -k CLOCK_MONOTONIC`, so that a window can be profiled alone.
func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// With `BRIDGE_BENCHMARK_WINDOWS` set, prints a measured window as `perf report --time` takes it (start,end in
/// seconds of `CLOCK_MONOTONIC`), to profile only the bridge's own work:
/// `perf record -k CLOCK_MONOTONIC -g -- bridge-benchmark ingest`, then `perf report --time <start>,<end>`.
func printProfilingWindow(_ label: String, from start: Double) {
    guard ProcessInfo.processInfo.environment["BRIDGE_BENCHMARK_WINDOWS"] != nil else { return }
    print(String(format: "window %@: %.6f,%.6f", label, start, monotonicSeconds()))
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// Runs the bridge's ingest over `topic` until every event is applied; returns its rate (from the first event applied)
/// and the start-up before it, and checks the aggregates.
func bridgeIngest(
    bootstrap: String, topic: String, workload: Workload, validator: JSONSchemaValidatorBox
) async throws -> (rate: IngestRate, startupSeconds: Double) {
    let metrics = BridgeMetrics()
    let store = JobStore(limits: StoreLimits(maxJobs: 100_000), metrics: metrics)
    let properties = KafkaProperties(["fetch.wait.max.ms": "10"])
    let group = "bench-\(UUID().uuidString)"
    let reader = try KafkaPartitionReader(bootstrapServers: bootstrap, properties: properties, logger: logger)
    let membership = try KafkaGroupMembership(
        configuration: KafkaConsumerConfiguration(bootstrapServers: bootstrap, groupId: group, topics: [topic], properties: properties, autoCommit: false),
        logger: logger)
    let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: bootstrap), logger: logger)
    let changelogProducer = try KafkaProducer(
        configuration: KafkaProducerConfiguration(bootstrapServers: bootstrap, properties: KafkaProperties(["compression.type": "lz4"])), logger: logger)
    let ingest = IngestService(
        reader: reader, membership: membership, deadLetterProducer: producer, deadLetterTopic: "bench.dlq",
        decoder: EventDecoder(validator: validator.validator), store: store, metrics: metrics, readiness: Readiness(), logger: logger,
        durability: IngestService.Durability(
            changelog: StateChangelog(producer: changelogProducer, topic: "bench.state.\(group)"), bootstrapServers: bootstrap, properties: properties))
    /// Timed from the first event applied (looked for every millisecond) to the last; what comes before — restoring
    /// the (empty) state topic, joining the group, the first fetch — is start-up, reported on its own.
    struct Timing: Sendable {
        var startup: Duration
        var ingest: Duration
        var cpuSeconds: Double
    }
    let launched = ContinuousClock.now
    let timing = try await withThrowingTaskGroup(of: Timing?.self) { tasks in
        tasks.addTask {
            try await ingest.run()
            return nil
        }
        tasks.addTask {
            while store.trackedJobs == 0 { try await Task.sleep(for: .milliseconds(1)) }
            let firstApplied = ContinuousClock.now
            let cpuAtStart = harnessCPUSeconds()
            let windowStart = monotonicSeconds()
            while store.readAll({ $0.state == .completed ? 1 : nil }).count < workload.jobs {
                try await Task.sleep(for: .milliseconds(5))
            }
            printProfilingWindow("ingest \(workload.name)", from: windowStart)
            return Timing(startup: firstApplied - launched, ingest: .now - firstApplied, cpuSeconds: harnessCPUSeconds() - cpuAtStart)
        }
        var result: Timing?
        while let next = try await tasks.next() {
            if let next {
                result = next
                tasks.cancelAll()
            }
        }
        return result!
    }
    // A fast wrong answer cannot pass: every job complete, every video counted.
    let totals = store.readAll { aggregate -> (Int, Int)? in (aggregate.progress().completed, aggregate.videos.count) }
    precondition(totals.count == workload.jobs && totals.allSatisfy { $0 == (workload.videos, workload.videos) }, "wrong aggregates: \(totals.prefix(3))")
    let rate = IngestRate(
        eventsPerSecond: Double(workload.total) / seconds(timing.ingest), cpuMicrosecondsPerEvent: timing.cpuSeconds * 1e6 / Double(workload.total))
    return (rate, seconds(timing.startup))
}

/// The validator, loaded once (loading compiles the schemas).
struct JSONSchemaValidatorBox: Sendable {
    let validator: JSONSchemaValidator
}

/// Ingest, small and large jobs: raw librdkafka against the bridge's ingest path, `runs` times each; prints a table.
func ingestSection(runs: Int, schemas: String, cluster: KafkaMockCluster, producer: KafkaProducer) async throws {
    let validator = JSONSchemaValidatorBox(validator: try BridgeRuntime.loadValidator(schemasPath: schemas))
    try cluster.createTopic("bench.dlq", partitions: 1)
    print("ingest, \(runs) runs each (events/s; median in bold)")
    print("| workload | events | raw librdkafka | bridge | bridge / raw | CPU per event, raw / bridge (µs, whole process) | bridge start-up (state restored, group joined) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for workload in [Workload(name: "small", jobs: 100, videos: 200), Workload(name: "large", jobs: 4, videos: 5_000)] {
        let topic = "bench.events.\(workload.name)"
        try cluster.createTopic(topic, partitions: 16)
        try await producer.sendAll(workload.records(topic: topic))
        var raw: [IngestRate] = []
        var bridge: [IngestRate] = []
        var startups: [Double] = []
        for _ in 0..<runs {
            raw.append(rawConsume(bootstrap: cluster.bootstrapServers, topic: topic, partitions: 16, total: workload.total))
            let measured = try await bridgeIngest(bootstrap: cluster.bootstrapServers, topic: topic, workload: workload, validator: validator)
            bridge.append(measured.rate)
            startups.append(measured.startupSeconds)
        }
        let rawMedian = median(raw.map(\.eventsPerSecond))
        let bridgeMedian = median(bridge.map(\.eventsPerSecond))
        func list(_ values: [Double]) -> String { values.map { String(format: "%.0f", $0) }.joined(separator: ", ") }
        func cpu(_ rates: [IngestRate]) -> String { String(format: "%.1f", median(rates.map(\.cpuMicrosecondsPerEvent))) }
        print(
            "| \(workload.name): \(workload.jobs) jobs × \(workload.videos) videos | \(workload.total) | \(list(raw.map(\.eventsPerSecond))) (**\(String(format: "%.0f", rawMedian))**) | \(list(bridge.map(\.eventsPerSecond))) (**\(String(format: "%.0f", bridgeMedian))**) | \(String(format: "%.1f %%", 100 * bridgeMedian / rawMedian)) | \(cpu(raw)) / \(cpu(bridge)) | \(startups.map { String(format: "%.2f s", $0) }.joined(separator: ", ")) |"
        )
    }
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// The two stages of ingest on one core each, without Kafka: decoding (parse, validate, typed event) and applying
/// to the store (aggregate, resume history: the event's message is written only for a job somebody watches, and
/// nobody does here), over the same workloads, `runs` times; prints a table.
/// Ingest runs them on two cores side by side, so the slower one bounds it. Then, unless `ingestOnly`, what job
/// events and a watched job cost the applying stage.
func stagesSection(runs: Int, schemas: String, ingestOnly: Bool = false) throws {
    let decoder = EventDecoder(validator: try BridgeRuntime.loadValidator(schemasPath: schemas))
    print("\ningest stages on one core, no Kafka, \(runs) runs each (events/s; median in bold)")
    print("| workload | events | decode (parse, validate, typed) | apply (aggregate, resume history) |")
    print("| --- | --- | --- | --- |")
    for workload in [Workload(name: "small", jobs: 100, videos: 200), Workload(name: "large", jobs: 4, videos: 5_000)] {
        let records = workload.records(topic: "stages")
        var decodeRates: [Double] = []
        var applyRates: [Double] = []
        for _ in 0..<runs {
            let decodeStart = ContinuousClock.now
            var events: [ProgressEvent] = []
            events.reserveCapacity(records.count)
            for record in records {
                guard case .success(let event) = decoder.decode(record.value ?? []) else { preconditionFailure("the workload must be valid") }
                events.append(event)
            }
            decodeRates.append(Double(records.count) / seconds(.now - decodeStart))
            let store = JobStore(limits: StoreLimits(maxJobs: 100_000), metrics: BridgeMetrics())
            // Partitioned by job, as the key is.
            let partitions = events.map { Int32(truncatingIfNeeded: $0.jobId.utf8.reduce(7) { ($0 &* 31 &+ Int($1)) & 0xFFFF } % 16) }
            var offsets = [Int64](repeating: 0, count: 16)
            let applyStart = ContinuousClock.now
            for (event, partition) in zip(events, partitions) {
                let offset = offsets[Int(partition)]
                offsets[Int(partition)] += 1
                guard case .applied = store.apply(event, at: EventOrigin(partition: TopicPartition(topic: "stages", partition: partition), offset: offset))
                else { preconditionFailure("every event of the workload applies") }
            }
            applyRates.append(Double(events.count) / seconds(.now - applyStart))
            let totals = store.readAll { aggregate -> (Int, Int)? in (aggregate.progress().completed, aggregate.videos.count) }
            precondition(totals.count == workload.jobs && totals.allSatisfy { $0 == (workload.videos, workload.videos) }, "wrong aggregates")
        }
        func list(_ values: [Double]) -> String { values.map { String(format: "%.0f", $0) }.joined(separator: ", ") }
        print(
            "| \(workload.name): \(workload.jobs) jobs × \(workload.videos) videos | \(records.count) | \(list(decodeRates)) (**\(String(format: "%.0f", median(decodeRates)))**) | \(list(applyRates)) (**\(String(format: "%.0f", median(applyRates)))**) |"
        )
    }
    if ingestOnly { return }
    try jobEventsSection(runs: runs, decoder: decoder)
    try watchedJobSection(runs: runs, decoder: decoder)
}

/// What a job's subscribers cost the applying thread: 1,000 video events (100 with 10,000 subscribers) applied to a job
/// watched by N subscribers, their outboxes (no sockets: what is queued stays) either queued by the applying thread
/// itself — every subscriber's outbox, under the job's lock, as the bridge did before the ninth session of 2026-12-01 —
/// or delivered on two event loops, as a connection's outbox is now: one post per loop and event, the loops queueing it
/// for their subscribers beside. Prints the applying thread's events/s, and (on the loops) the events/s until every
/// subscriber has every event.
func watchedJobSection(runs: Int, decoder: EventDecoder) throws {
    print("\nevents of a watched job: 1,000 video events (100 with 10,000 subscribers) applied to a job with N subscribers (events/s; median in bold)")
    print("| subscribers | queued by the applying thread | posted to 2 event loops: applying thread | …: until queued for every subscriber |")
    print("| --- | --- | --- | --- |")
    let loops = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    defer { try? loops.syncShutdownGracefully() }
    for subscribers in [1, 1_000, 10_000] {
        // At most ~500,000 subscribers' messages waiting for each loop: under its bound (`maxDeliveries`, past which it
        // would close subscribers).
        let events = subscribers > 1_000 ? 100 : 1_000
        var direct: [Double] = []
        var posting: [Double] = []
        var delivered: [Double] = []
        for run in 0..<runs {
            var expected = 0  // bytes of the events' messages: what every subscriber gets (the same job, events and `seq`s)
            for routed in [false, true] {
                let metrics = BridgeMetrics()
                let store = JobStore(limits: StoreLimits(maxJobs: 10), metrics: metrics)
                let job = "job_watched_\(subscribers)_\(run)"
                let outboxes = (0..<subscribers).map { _ in
                    routed
                        ? Outbox(capacity: events + 10, metrics: metrics, deliveredOn: loops.any())
                        : Outbox(capacity: events + 10, metrics: metrics)
                }
                for outbox in outboxes { store.subscribe(jobId: job, subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: nil, now: 0) }
                var decoded: [ProgressEvent] = []
                for i in 0..<events {
                    let type = i == 0 ? "job.state_changed" : "video.updated"
                    let data = i == 0 ? #"{"from":null,"to":"running","job":{"total_videos":1000}}"# : #"{"video_id":"vid_\#(i)","state":"processing","progress_percent":50}"#
                    let text = #"{"schema_version":1,"event_id":"\#(job)-\#(i)","type":"\#(type)","job_id":"\#(job)","occurred_at":"2026-11-24T12:00:00.000Z","data":\#(data)}"#
                    guard case .success(let event) = decoder.decode(Array(text.utf8)) else { preconditionFailure("the workload must be valid") }
                    decoded.append(event)
                }
                // Every subscriber has its snapshot first (queued on the loops too).
                while outboxes.contains(where: { $0.queuedBytes == 0 }) { usleep(1_000) }
                let before = outboxes.map(\.queuedBytes)
                let start = ContinuousClock.now
                for (offset, event) in decoded.enumerated() {
                    guard case .applied = store.apply(event, at: EventOrigin(partition: TopicPartition(topic: "watched", partition: 0), offset: Int64(offset)))
                    else { preconditionFailure("every event applies") }
                }
                let applied = seconds(.now - start)
                if !routed { expected = outboxes[0].queuedBytes - before[0] }
                while zip(outboxes, before).contains(where: { $0.queuedBytes - $1 != expected }) {
                    precondition(outboxes.allSatisfy { $0.closure == nil }, "no subscriber may be closed")
                    usleep(200)
                }
                let all = seconds(.now - start)
                precondition(outboxes.allSatisfy { $0.closure == nil }, "no subscriber may be closed")
                if routed {
                    posting.append(Double(events) / applied)
                    delivered.append(Double(events) / all)
                } else {
                    direct.append(Double(events) / applied)
                }
                for outbox in outboxes { store.unsubscribe(jobId: job, subscriber: ObjectIdentifier(outbox)) }
            }
        }
        func list(_ rates: [Double]) -> String { rates.map { String(format: "%.0f", $0) }.joined(separator: ", ") + " (**\(String(format: "%.0f", median(rates)))**)" }
        print("| \(subscribers) | \(list(direct)) | \(list(posting)) | \(list(delivered)) |")
    }
}

/// A job event's message carries the job's whole progress (counts, throughput, processing times): its cost must not
/// grow with the job's size. Applies 2,000 `job.progress` events to one job of N finished videos, for N from 100 to
/// 100,000, on one core; prints events/s.
func jobEventsSection(runs: Int, decoder: EventDecoder) throws {
    print("\njob events on one core: 2,000 job.progress events applied to a job of N completed videos (events/s; median in bold)")
    print("| videos in the job | job.progress events/s |")
    print("| --- | --- |")
    for videos in [100, 10_000, 100_000] {
        var rates: [Double] = []
        for run in 0..<runs {
            let store = JobStore(limits: StoreLimits(maxJobs: 10), metrics: BridgeMetrics())
            let job = "job_bench_size_\(videos)_\(run)"
            var offset: Int64 = 0
            func apply(_ type: String, _ data: String, at ms: Int) {
                let stamp = String(format: "2026-11-24T%02d:%02d:%02d.%03dZ", 10 + ms / 3_600_000, (ms / 60_000) % 60, (ms / 1000) % 60, ms % 1000)
                let text = #"{"schema_version":1,"event_id":"\#(job)-\#(offset)","type":"\#(type)","job_id":"\#(job)","occurred_at":"\#(stamp)","data":\#(data)}"#
                guard case .success(let event) = decoder.decode(Array(text.utf8)) else { preconditionFailure("the workload must be valid") }
                guard case .applied = store.apply(event, at: EventOrigin(partition: TopicPartition(topic: "sizes", partition: 0), offset: offset))
                else { preconditionFailure("every event applies") }
                offset += 1
            }
            apply("job.state_changed", #"{"from":null,"to":"running","job":{"total_videos":\#(videos)}}"#, at: 0)
            for v in 0..<videos {
                apply("video.completed", #"{"video_id":"vid_\#(v)","processing_ms":\#(1_000 + v % 5_000)}"#, at: 1 + v)
            }
            // Decoded first, so that only applying is timed.
            var events: [ProgressEvent] = []
            for i in 0..<2_000 {
                let text =
                    #"{"schema_version":1,"event_id":"\#(job)-p\#(i)","type":"job.progress","job_id":"\#(job)","occurred_at":"2026-11-24T12:00:00.000Z","data":{"total_videos":\#(videos),"completed":\#(videos),"failed":0}}"#
                guard case .success(let event) = decoder.decode(Array(text.utf8)) else { preconditionFailure("the workload must be valid") }
                events.append(event)
            }
            let start = ContinuousClock.now
            for event in events {
                guard case .applied = store.apply(event, at: EventOrigin(partition: TopicPartition(topic: "sizes", partition: 0), offset: offset))
                else { preconditionFailure("every event applies") }
                offset += 1
            }
            rates.append(Double(events.count) / seconds(.now - start))
            precondition(store.read(job, { $0.progress().processingTime?.samples }) == videos, "wrong aggregate")
        }
        print("| \(videos) | \(rates.map { String(format: "%.0f", $0) }.joined(separator: ", ")) (**\(String(format: "%.0f", median(rates)))**) |")
    }
}

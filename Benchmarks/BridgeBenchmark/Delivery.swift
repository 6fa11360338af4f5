import CRdKafka
import Foundation
import JSONSchema
import Kafka
import SubscriberLoad
import Synchronization

/// One live job as a monitor publishes it: each event stamped `occurred_at` = the wall clock when it is sent, so
/// that a receiver's latency is its receive time minus that.
struct LiveJob {
    let id: String
    let topic: String
    let videos: Int
    private var seq = 0
    private var updates = 0

    init(topic: String, videos: Int, label: String) {
        id = "job_bench_\(label)_\(UUID().uuidString.prefix(8).lowercased())"
        self.topic = topic
        self.videos = videos
    }

    private mutating func record(_ type: String, _ data: String) -> KafkaRecord {
        seq += 1
        let stamp = RFC3339.format(milliseconds: Int64(Date().timeIntervalSince1970 * 1000))
        let value = #"{"schema_version":1,"event_id":"\#(id)-\#(seq)","type":"\#(type)","job_id":"\#(id)","occurred_at":"\#(stamp)","seq":\#(seq),"data":\#(data)}"#
        return KafkaRecord(topic: topic, key: Array(id.utf8), value: Array(value.utf8))
    }

    /// The job created and running, with its videos created.
    mutating func opening() -> [KafkaRecord] {
        var records = [
            record("job.state_changed", #"{"from":null,"to":"pending","job":{"title":"Benchmark job","total_videos":\#(videos),"processing_deadline_ms":3600000,"priority":"high"}}"#),
            record("job.state_changed", #"{"from":"pending","to":"running"}"#),
        ]
        for v in 0..<videos {
            records.append(record("video.created", #"{"video_id":"vid_\#(v)","row_index":\#(v + 2),"title":"Video \#(v)"}"#))
        }
        return records
    }

    /// The next progress update of one of its videos (round robin; the percentage moves every time).
    mutating func update() -> KafkaRecord {
        updates += 1
        let video = updates % videos
        let percent = (updates / videos) % 100
        return record("video.updated", #"{"video_id":"vid_\#(video)","state":"processing","progress_percent":\#(percent),"stage":"render","attempt":1}"#)
    }
}

/// Sends `job`'s updates at `rate` per second for `duration` (each send waits for Kafka's acknowledgement, as the
/// Python monitor's flush does not; at these rates that never falls behind). Returns how many were sent.
func produce(_ job: inout LiveJob, rate: Double, for duration: Duration, with producer: KafkaProducer) async throws -> Int {
    let interval = Duration.seconds(1 / rate)
    let started = ContinuousClock.now
    var next = started
    var sent = 0
    while ContinuousClock.now - started < duration {
        let record = job.update()
        try await producer.send(topic: record.topic, key: record.key, value: record.value)
        sent += 1
        next += interval
        if next > .now { try await Task.sleep(until: next) }
    }
    return sent
}

/// Latencies in milliseconds, summarised.
struct Percentiles {
    let count: Int
    let p50: Double
    let p99: Double
    let max: Double

    init(count: Int, p50: Double, p99: Double, max: Double) {
        self.count = count
        self.p50 = p50
        self.p99 = p99
        self.max = max
    }

    init(_ values: [Double]) {
        let sorted = values.sorted()
        count = sorted.count
        func at(_ q: Double) -> Double { sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(q * Double(sorted.count)))] }
        p50 = at(0.5)
        p99 = at(0.99)
        max = sorted.last ?? .nan
    }
}

/// Kafka's own delivery latency: a plain librdkafka consumer (`fetch.wait.max.ms=10`, as the bridge) reading `topic`
/// from its end while `job`'s updates are produced; latency = consume time − `occurred_at`.
func rawDeliveryLatency(bootstrap: String, job: inout LiveJob, partitions: Int32, rate: Double, duration: Duration, producer: KafkaProducer) async throws
    -> Percentiles
{
    let consumer = RawConsumer(makeRawConsumer(bootstrap: bootstrap))
    let list = rd_kafka_topic_partition_list_new(partitions)!
    for p in 0..<partitions { rd_kafka_topic_partition_list_add(list, job.topic, p)!.pointee.offset = Int64(RD_KAFKA_OFFSET_END) }
    rd_kafka_assign(consumer.handle, list)
    rd_kafka_topic_partition_list_destroy(list)
    try await Task.sleep(for: .seconds(1))  // the assignment takes effect (ListOffsets for the end) before producing
    let stop = Atomic<Bool>(false)
    let latencies = Mutex<[Double]>([])
    let reading = Thread {
        while !stop.load(ordering: .relaxed) {
            guard let message = rd_kafka_consumer_poll(consumer.handle, 100) else { continue }
            // Whole milliseconds, as the subscribers' clock reads (`occurred_at` has ms resolution): a fractional
            // receive time would add half a millisecond to Kafka's latency and take it off what the bridge adds.
            let now = (Date().timeIntervalSince1970 * 1000).rounded(.down)
            if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR, let payload = message.pointee.payload {
                let bytes = UnsafeRawBufferPointer(start: payload, count: message.pointee.len)
                if let stamp = occurredAt(in: bytes) { latencies.withLock { $0.append(now - Double(stamp)) } }
            }
            rd_kafka_message_destroy(message)
        }
    }
    reading.start()
    _ = try await produce(&job, rate: rate, for: duration, with: producer)
    try await Task.sleep(for: .milliseconds(500))
    stop.store(true, ordering: .relaxed)
    while reading.isExecuting { try await Task.sleep(for: .milliseconds(20)) }
    try await Task.sleep(for: .milliseconds(150))
    return Percentiles(latencies.withLock { $0 })
}

/// Owns a raw consumer handle: closed and destroyed once.
final class RawConsumer: @unchecked Sendable {
    let handle: OpaquePointer
    init(_ handle: OpaquePointer) { self.handle = handle }
    deinit {
        rd_kafka_consumer_close(handle)
        rd_kafka_destroy(handle)
    }
}

/// The `occurred_at` of an event's JSON, in epoch ms.
func occurredAt(in bytes: UnsafeRawBufferPointer) -> Int64? {
    let key = Array(#""occurred_at":""#.utf8)
    guard bytes.count > key.count + 24 else { return nil }
    var i = 0
    while i + key.count + 24 <= bytes.count {
        if bytes[i] == key[0], zip(bytes[i..<(i + key.count)], key).allSatisfy({ $0 == $1 }) {
            let start = i + key.count
            return RFC3339.parseMilliseconds(String(decoding: bytes[start..<(start + 24)], as: UTF8.self))
        }
        i += 1
    }
    return nil
}

/// One delivery measurement: `subscribers` on one job of the bridge while its updates are produced at `rate`.
struct DeliveryResult {
    let report: LoadReport
    /// Server memory before the subscribers connected and once all were connected and idle.
    let residentBefore: Int
    let residentConnected: Int
    /// CPU seconds used while the updates were produced: by the bridge's process, and by this one (the load client,
    /// the producer and the mock cluster); and how many updates that was.
    var bridgeCPUSeconds = 0.0
    var harnessCPUSeconds = 0.0
    var produced = 0
    var perSubscriberKiB: Double { Double(residentConnected - residentBefore) / 1024 / Double(max(1, report.connectionsConnected)) }

    /// Microseconds of CPU per delivery (an update to each connected subscriber) of `seconds`.
    func perDelivery(_ seconds: Double) -> Double { seconds * 1e6 / Double(max(1, produced * report.connectionsConnected)) }
}

/// CPU seconds this process used so far, user + system.
func harnessCPUSeconds() -> Double {
    var usage = rusage()
    #if canImport(Glibc)
    getrusage(RUSAGE_SELF.rawValue, &usage)  // (an enum case in Glibc's module, a plain constant elsewhere)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    return usage.cpuMicroseconds / 1e6
}

extension rusage {
    /// User + system time, in microseconds.
    var cpuMicroseconds: Double {
        Double(ru_utime.tv_sec + ru_stime.tv_sec) * 1e6 + Double(ru_utime.tv_usec + ru_stime.tv_usec)
    }
}

/// Connects `subscribers` to a fresh job on `bridge`, waits until all have their snapshot (and measures the
/// bridge's memory then), then produces at `rate` for `duration` and returns what the subscribers saw.
func bridgeDelivery(
    bridge: BridgeProcess, topic: String, subscribers: Int, rate: Double, duration: Duration, producer: KafkaProducer, label: String,
    client: (engine: LoadEngine, readInterval: Duration)
) async throws -> DeliveryResult {
    var job = LiveJob(topic: topic, videos: 100, label: label)
    try await producer.sendAll(job.opening())
    // The job must exist before subscribers ask for it.
    while httpGet(port: bridge.port, path: "/api/v1/bulk-jobs/\(job.id)")?.status != 200 { try await Task.sleep(for: .milliseconds(20)) }
    try await Task.sleep(for: .seconds(1))
    let residentBefore = bridge.residentBytes
    var configuration = LoadConfiguration(jobIds: [job.id])
    configuration.url = bridge.webSocketURL
    configuration.connections = subscribers
    configuration.duration = duration
    configuration.drain = .seconds(3)
    configuration.engine = client.engine
    configuration.readInterval = client.readInterval
    let load = configuration
    let measuring = AsyncStream.makeStream(of: Void.self)
    return try await withThrowingTaskGroup(of: DeliveryResult?.self) { tasks in
        tasks.addTask {
            defer { measuring.continuation.finish() }  // (a run that ends early must not leave the producer waiting)
            let report = try await runLoad(load) { progress in
                if progress.phase == .measuring { measuring.continuation.yield() }
                FileHandle.standardError.write(Data(("\r  " + progress.line + "   ").utf8))
            }
            FileHandle.standardError.write(Data("\n".utf8))
            return DeliveryResult(report: report, residentBefore: residentBefore, residentConnected: 0)
        }
        var residentConnected = 0
        var cpu = (bridge: 0.0, harness: 0.0, produced: 0)
        for await _ in measuring.stream {
            // Everyone connected and idle: the memory a subscriber costs, before any message is in flight.
            try await Task.sleep(for: .milliseconds(500))
            residentConnected = bridge.residentBytes
            let (bridgeBefore, harnessBefore) = (bridge.cpuSeconds, harnessCPUSeconds())
            cpu.produced = try await produce(&job, rate: rate, for: duration, with: producer)
            cpu.bridge = bridge.cpuSeconds - bridgeBefore
            cpu.harness = harnessCPUSeconds() - harnessBefore
            break
        }
        var result: DeliveryResult?
        while let next = try await tasks.next() {
            if let next { result = next }
        }
        guard let result else { throw BenchmarkError("the load run returned nothing") }
        return DeliveryResult(
            report: result.report, residentBefore: residentBefore, residentConnected: residentConnected, bridgeCPUSeconds: cpu.bridge,
            harnessCPUSeconds: cpu.harness, produced: cpu.produced)
    }
}

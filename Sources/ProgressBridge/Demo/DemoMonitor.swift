import Foundation
import Kafka
import Logging
import ServiceLifecycle

/// Settings of the demo monitor.
public struct DemoSettings: Sendable {
    /// Jobs running at the same time. Default 3.
    public var concurrentJobs = 3
    /// Videos per job. Default 24…60.
    public var videosPerJob = 24...60
    /// Time between ticks. Default 500 ms.
    public var tick: Duration = .milliseconds(500)
    /// Random seed. Default 42.
    public var seed: UInt64 = 42
    /// Most jobs started in total (`nil`: keep going). Default `nil`.
    public var maxJobs: Int?

    public init() {}
}

/// Publishes realistic jobs to Kafka as the Python monitor would: many videos, failures and
/// retries, state changes, cancellations, occasional duplicates and the odd malformed event
/// (so the dead-letter path has something to show).
public struct DemoMonitor: Service {
    let producer: KafkaProducer
    let topic: String
    let settings: DemoSettings
    let logger: Logger
    let publicURL: String

    public init(producer: KafkaProducer, topic: String, settings: DemoSettings = .init(), publicURL: String, logger: Logger) {
        self.producer = producer
        self.topic = topic
        self.settings = settings
        self.publicURL = publicURL
        self.logger = logger
    }

    public func run() async throws {
        var rng = SplitMix64(seed: settings.seed)
        var jobs: [DemoJobSimulation] = []
        var started = 0
        var tickCount = 0
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let now = WallClock.nowMs()
            jobs.removeAll { $0.finished }
            while jobs.count < settings.concurrentJobs, settings.maxJobs.map({ started < $0 }) ?? true {
                started += 1
                var job = DemoJobSimulation(
                    number: started, videoCount: Int.random(in: settings.videosPerJob, using: &rng), concurrency: 6,
                    cancel: started % 5 == 0, now: now, rng: &rng)
                publish(job.jobId, job.start(now: now, rng: &rng), rng: &rng)
                logger.info("demo job started", metadata: ["job_id": "\(job.jobId)", "watch": "\(publicURL)/?job_id=\(job.jobId)"])
                jobs.append(job)
            }
            for i in jobs.indices {
                publish(jobs[i].jobId, jobs[i].tick(now: now, rng: &rng), rng: &rng)
            }
            tickCount += 1
            if tickCount % 40 == 0 { publishBadEvent(tickCount, rng: &rng) }
            await producer.poll()
            if jobs.isEmpty, settings.maxJobs.map({ started >= $0 }) ?? false { break }
            try? await Task.sleep(for: settings.tick)
        }
        try? await producer.flush(timeoutMs: 5_000)
    }

    private func publish(_ jobId: String, _ events: [String], rng: inout SplitMix64) {
        for text in events {
            send(jobId, text)
            // At-least-once producers resend now and then: the bridge must count these once.
            if Double.random(in: 0..<1, using: &rng) < 0.03 { send(jobId, text) }
        }
    }

    private func send(_ jobId: String, _ text: String) {
        do {
            try producer.produce(topic: topic, key: Array(jobId.utf8), value: Array(text.utf8))
        } catch {
            logger.warning("demo monitor could not queue an event", metadata: ["error": "\(error)"])
        }
    }

    private func publishBadEvent(_ tick: Int, rng: inout SplitMix64) {
        let bad = [
            #"{"schema_version":1,"event_id":"bad-\#(tick)","type":"video.completed","job_id":"job_demo_0001","occurred_at":"2026-11-24T10:15:30Z","data":{"video_id":"vid_0001"}}"#,
            #"{"schema_version":2,"event_id":"future-\#(tick)","type":"job.progress","job_id":"job_demo_0001","occurred_at":"2026-11-24T10:15:30Z","data":{}}"#,
            "this is not JSON \(tick)",
        ]
        send("job_demo_0001", bad[Int(rng.next() % UInt64(bad.count))])
    }
}

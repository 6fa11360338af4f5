import Foundation
import JSONSchema
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
/// (so the dead-letter path has something to show). It also acts on the command topic as a monitor does — pause,
/// resume, cancel its jobs and start the jobs people create — so the dashboard's buttons do something.
public struct DemoMonitor: Service {
    let producer: KafkaProducer
    let topic: String
    let settings: DemoSettings
    let logger: Logger
    let publicURL: String
    /// The command topic, when the demo acts on commands.
    let commands: KafkaTopicFollower?

    public init(
        producer: KafkaProducer, topic: String, commands: KafkaTopicFollower? = nil, settings: DemoSettings = .init(), publicURL: String, logger: Logger
    ) {
        self.producer = producer
        self.topic = topic
        self.commands = commands
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
            for record in await commands?.poll() ?? [] {
                act(on: record, jobs: &jobs, now: now, rng: &rng)
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

    /// Jobs people created that run beside the demo's own.
    static let createdJobsAtOnce = 10

    /// One command record: a control command for one of its jobs, or a job to create (ignored otherwise, as a
    /// monitor ignores what it cannot act on).
    private func act(on record: KafkaMessage, jobs: inout [DemoJobSimulation], now: Int64, rng: inout SplitMix64) {
        guard let command = try? JSONParser(limits: .init(maxDepth: 16, maxBytes: 64 * 1024)).parse(record.value),
            let type = command["type"]?.stringValue, let jobId = command["job_id"]?.stringValue
        else { return }
        logger.info("demo monitor acts on a command", metadata: ["type": "\(type)", "job_id": "\(jobId)"])
        if type == "job.create" {
            // Bounded like the rest of the demo: at most a few created jobs run at once; a repeated create is ignored.
            guard !jobs.contains(where: { $0.jobId == jobId }), jobs.count < settings.concurrentJobs + Self.createdJobsAtOnce else { return }
            var job = DemoJobSimulation(
                jobId: jobId, title: command["data"]?["title"]?.stringValue ?? jobId, videoCount: Int.random(in: settings.videosPerJob, using: &rng),
                concurrency: 6, cancel: false, now: now, rng: &rng)
            publish(jobId, job.start(now: now, rng: &rng), rng: &rng)
            jobs.append(job)
            return
        }
        guard let index = jobs.firstIndex(where: { $0.jobId == jobId }) else { return }
        publish(jobId, jobs[index].command(type, now: now, rng: &rng), rng: &rng)
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

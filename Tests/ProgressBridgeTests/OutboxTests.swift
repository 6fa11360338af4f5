import ProgressContract
import SubscriberProtocol
import Synchronization
import Testing

@testable import ProgressBridge

@Suite("Subscriber outbox")
struct OutboxTests {
    func message(_ type: String, seq: Int64, job: String = "job_a") -> OutboundMessage {
        OutboundMessage(type: type, jobId: job, seq: seq, occurredAt: nil, text: "\(type)#\(seq)")
    }

    @Test func progressIsConflatedButOtherEventsAreKept() async {
        let metrics = BridgeMetrics()
        let outbox = Outbox(capacity: 10, metrics: metrics)
        outbox.enqueue(message("job.progress", seq: 1))
        outbox.enqueue(message("video.failed", seq: 2))
        outbox.enqueue(message("job.progress", seq: 3))
        outbox.enqueue(message("job.progress", seq: 4, job: "job_b"))
        outbox.enqueue(message("job.completed", seq: 5))
        var seen: [String] = []
        while let m = outbox.take() { seen.append(m.text) }
        #expect(seen == ["video.failed#2", "job.progress#3", "job.progress#4", "job.completed#5"])
        #expect(metrics.render().contains("progress_bridge_messages_conflated_total 1"))
    }

    @Test func overflowClosesTheOutboxAndCountsDrops() async {
        let metrics = BridgeMetrics()
        let outbox = Outbox(capacity: 3, metrics: metrics)
        for i in 1...4 { outbox.enqueue(message("video.updated", seq: Int64(i))) }
        #expect(outbox.closure == .overflowed)
        #expect(outbox.take() == nil)
        #expect(metrics.render().contains("progress_bridge_send_queue_overflows_total 1"))
        #expect(metrics.render().contains("progress_bridge_messages_dropped_total 4"))
    }

    @Test func theDrainIsWokenOnceUntilItFindsTheQueueEmpty() {
        let outbox = Outbox(capacity: 3, metrics: BridgeMetrics())
        let wakes = Mutex(0)
        outbox.drain { wakes.withLock { $0 += 1 } }
        #expect(wakes.withLock { $0 } == 0, "nothing queued, nothing to drain")
        outbox.enqueue(message("video.updated", seq: 1))
        outbox.enqueue(message("video.updated", seq: 2))
        #expect(wakes.withLock { $0 } == 1, "a drain under way is not woken again")
        #expect(outbox.take()?.seq == 1)
        #expect(outbox.take()?.seq == 2)
        #expect(outbox.take() == nil)
        outbox.enqueue(message("video.updated", seq: 3))
        #expect(wakes.withLock { $0 } == 2, "once it found the queue empty, the next message wakes it")
        outbox.close(.shuttingDown)
        #expect(outbox.take() == nil)
        outbox.enqueue(message("video.updated", seq: 4))
        #expect(wakes.withLock { $0 } == 2, "a closed outbox wakes nobody")
    }
}

@Suite("Bridge metrics")
struct BridgeMetricsTests {
    /// Each event type's counter is the one labelled with that type (they are found by place, not by name).
    @Test func eachEventTypeIsCountedUnderItsOwnLabel() {
        let metrics = BridgeMetrics()
        for (place, type) in EventType.allCases.enumerated() {
            for _ in 0...place { metrics.consumed(type).increment() }
        }
        let text = metrics.render()
        for (place, type) in EventType.allCases.enumerated() {
            #expect(text.contains("progress_bridge_events_consumed_total{type=\"\(type.rawValue)\"} \(place + 1)\n"), "\(type)")
        }
    }
}

@Suite("Configuration")
struct ConfigurationTests {
    @Test func defaultsAreTheEmbeddedDemo() throws {
        let c = try BridgeConfiguration.resolve(ConfigurationFlags(), environment: [:])
        #expect(c.isEmbedded && c.demoMonitor)
        #expect((c.port, c.adminPort, c.topics, c.deadLetterTopic, c.groupId) == (8765, 9464, ["progress.events"], "progress.events.dlq", "progress-bridge"))
    }

    @Test func flagsWinOverEnvironment() throws {
        var flags = ConfigurationFlags()
        flags.port = "9000"
        flags.kafkaConfig = ["security.protocol=SASL_SSL", "sasl.password=a=b"]
        let c = try BridgeConfiguration.resolve(
            flags,
            environment: [
                "BRIDGE_PORT": "1", "KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_TOPICS": "a,b", "KAFKA_CONFIG": "x=y",
                "JWT_SECRET": String(repeating: "s", count: 32), "BRIDGE_IDLE_JOB_RETENTION": "3600",
            ])
        #expect(c.port == 9000)
        #expect(c.idleJobRetention == 3600 && c.finishedJobRetention == 86_400)
        #expect(c.kafkaBootstrap == "k:9092")
        #expect(!c.demoMonitor)
        #expect(c.topics == ["a", "b"])
        #expect(c.kafkaProperties == ["security.protocol": "SASL_SSL", "sasl.password": "a=b"])
        #expect(c.auth.jwtSecret?.count == 32 && !c.auth.insecureNoAuth)
    }

    @Test func anExternalClusterNeedsKeysOrAnExplicitInsecureFlag() throws {
        #expect {
            try BridgeConfiguration.resolve(ConfigurationFlags(), environment: ["KAFKA_BOOTSTRAP_SERVERS": "k:9092"])
        } throws: { error in
            (error as? ConfigurationError)?.message.contains("--insecure-no-auth") ?? false
        }
        var flags = ConfigurationFlags()
        flags.insecureNoAuth = true
        let c = try BridgeConfiguration.resolve(flags, environment: ["KAFKA_BOOTSTRAP_SERVERS": "k:9092"])
        #expect(c.auth.insecureNoAuth && !c.authDisabledForEmbeddedDefault)
        let embedded = try BridgeConfiguration.resolve(ConfigurationFlags(), environment: [:])
        #expect(embedded.auth.insecureNoAuth && embedded.authDisabledForEmbeddedDefault)
    }

    @Test(arguments: [
        (["port": "x"], [String: String](), "--port"),
        ([:], ["BRIDGE_ADMIN_PORT": "70000"], "BRIDGE_ADMIN_PORT"),
        ([:], ["LOG_LEVEL": "loud"], "LOG_LEVEL"),
        ([:], ["BRIDGE_DEMO_MONITOR": "maybe"], "BRIDGE_DEMO_MONITOR"),
        ([:], ["KAFKA_DLQ_TOPIC": "progress.events"], "--dlq-topic"),
        ([:], ["KAFKA_CONFIG": "=x"], "KAFKA_CONFIG"),
        (["port": "9464"], [:], "--admin-port"),
    ])
    func badValuesNameTheirFlag(flagValues: [String: String], environment: [String: String], expected: String) {
        var flags = ConfigurationFlags()
        flags.port = flagValues["port"]
        #expect {
            try BridgeConfiguration.resolve(flags, environment: environment)
        } throws: { error in
            (error as? ConfigurationError)?.message.contains(expected) ?? false
        }
    }

    @Test func subscriptionParametersAreChecked() {
        #expect(throws: Never.self) { try SubscriptionRequest.parse(jobId: "job_1", connectionId: nil, token: nil, lastSeq: "4").get() }
        #expect((try? SubscriptionRequest.parse(jobId: "job_1", connectionId: "c", token: nil, lastSeq: nil).get())?.connectionId == "c")
        for bad in [nil, "", "1234", "job_", "job_a b", "job_" + String(repeating: "x", count: 121)] as [String?] {
            #expect((try? SubscriptionRequest.parse(jobId: bad, connectionId: nil, token: nil, lastSeq: nil).get()) == nil, "\(bad ?? "nil")")
        }
        #expect((try? SubscriptionRequest.parse(jobId: "job_1", connectionId: nil, token: nil, lastSeq: "-1").get()) == nil)
    }
}

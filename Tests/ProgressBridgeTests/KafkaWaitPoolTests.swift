import Foundation
import Kafka
import Logging
import Testing

@Suite("Blocking librdkafka calls")
struct KafkaWaitPoolTests {
    /// Metadata queries to a broker that is not there each wait out their timeout on a thread. More of them than
    /// this machine has cores must not hold up another client's poll (on a pool of one thread per core they did).
    @Test func callsWaitingOnAnAbsentBrokerDoNotHoldUpAnotherClientsPoll() async throws {
        let logger = Logger(label: "test")
        let cluster = try KafkaMockCluster(brokers: 1, logger: logger)
        try cluster.createTopic("wait.events", partitions: 1)
        let reader = try KafkaPartitionReader(bootstrapServers: cluster.bootstrapServers, pollTimeoutMs: 100, logger: logger)
        try await reader.assign([TopicPartitionOffset(topic: "wait.events", partition: 0, offset: 0)])
        let absent = try KafkaProducer(configuration: .init(bootstrapServers: "127.0.0.1:1"), logger: logger)
        let waiters = ProcessInfo.processInfo.activeProcessorCount + 2
        let waitMs: Int32 = 4_000

        try await withThrowingTaskGroup(of: Void.self) { group in
            let started = ContinuousClock.now
            for _ in 0..<waiters {
                group.addTask { _ = await absent.topicError("wait.events", timeoutMs: waitMs) }
            }
            try await Task.sleep(for: .milliseconds(300))  // the waiters are on their threads
            let pollStarted = ContinuousClock.now
            _ = await reader.poll()
            let pollTook = ContinuousClock.now - pollStarted
            try await group.waitForAll()
            let waitersTook = ContinuousClock.now - started
            // The waiters really did wait (or the test proves nothing), and the poll did not wait for them.
            #expect(waitersTook >= .milliseconds(Int(waitMs) - 500), "the metadata queries took \(waitersTook)")
            #expect(pollTook < .seconds(2), "a 100 ms poll took \(pollTook) behind \(waiters) waiting calls")
        }
        await reader.close()
    }
}

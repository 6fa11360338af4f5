import Foundation
@testable import Kafka
import Logging
import Testing

@Suite("Blocking librdkafka calls")
struct KafkaWaitPoolTests {
    /// Shutdown cancels tasks, and then closes consumers and writes checkpoints: those calls must still wait on the
    /// Kafka pool's threads, not block one of the cooperative pool's (two here).
    @Test func aCancelledTasksCallStillWaitsOnThePool() async {
        let task = Task { () -> String? in
            withUnsafeCurrentTask { $0?.cancel() }
            return await blocking { Thread.current.name }
        }
        let thread = await task.value
        #expect(thread?.hasPrefix("TP-") == true, "ran on \(thread ?? "an unnamed thread")")
    }

    /// Metadata queries to a broker that is not there each wait out their timeout on a thread. More of them than
    /// this machine has cores must not hold up another client's poll (on a pool of one thread per core they did).
    @Test func callsWaitingOnAnAbsentBrokerDoNotHoldUpAnotherClientsPoll() async throws {
        let logger = Logger(label: "test")
        let cluster = try KafkaMockCluster(brokers: 1, logger: logger)
        try cluster.createTopic("wait.events", partitions: 1)
        let reader = try KafkaPartitionReader(bootstrapServers: cluster.bootstrapServers, pollTimeoutMs: 100, logger: logger)
        try await reader.assign([TopicPartitionOffset(topic: "wait.events", partition: 0, offset: 0)])
        let absent = try KafkaProducer(configuration: .init(bootstrapServers: "127.0.0.1:1"), logger: logger)
        // More than one per core (NIO's shared pool), fewer than the Kafka pool's 16 threads (with as many, the poll
        // would rightly wait too).
        let waiters = min(ProcessInfo.processInfo.activeProcessorCount + 2, 12)
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
            // (Without the fix the poll waits for a waiter to finish: 4 s at least. 3 s leaves room for a loaded machine.)
            #expect(pollTook < .seconds(3), "a 100 ms poll took \(pollTook) behind \(waiters) waiting calls")
        }
        await reader.close()
    }

    /// A reader's polls wait on a thread of its own: with every thread of the shared pool busy (more waiting calls
    /// than it has), the ingest poll still runs at once.
    @Test func aReadersPollDoesNotWaitForTheSharedPool() async throws {
        let logger = Logger(label: "test")
        let cluster = try KafkaMockCluster(brokers: 1, logger: logger)
        try cluster.createTopic("own.events", partitions: 1)
        let reader = try KafkaPartitionReader(bootstrapServers: cluster.bootstrapServers, pollTimeoutMs: 100, logger: logger)
        try await reader.assign([TopicPartitionOffset(topic: "own.events", partition: 0, offset: 0)])
        let absent = try KafkaProducer(configuration: .init(bootstrapServers: "127.0.0.1:1"), logger: logger)
        let waiters = 20  // more than the shared pool's 16 threads
        let waitMs: Int32 = 3_000

        try await withThrowingTaskGroup(of: Void.self) { group in
            let started = ContinuousClock.now
            for _ in 0..<waiters {
                group.addTask { _ = await absent.topicError("own.events", timeoutMs: waitMs) }
            }
            try await Task.sleep(for: .milliseconds(300))  // the shared pool's threads are all waiting
            let pollStarted = ContinuousClock.now
            _ = await reader.poll()
            let pollTook = ContinuousClock.now - pollStarted
            try await group.waitForAll()
            let waitersTook = ContinuousClock.now - started
            // 20 waits of 3 s on 16 threads take two turns (or the shared pool was not full, and this proves nothing).
            #expect(waitersTook >= .milliseconds(2 * Int(waitMs) - 500), "the metadata queries took \(waitersTook)")
            // (On the shared pool the poll waits for a waiter to finish: 2.7 s at least.)
            #expect(pollTook < .seconds(2), "a 100 ms poll took \(pollTook) behind \(waiters) waiting calls")
        }
        await reader.close()
    }
}

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

    /// Metadata queries to a broker that is not there each wait out their timeout on a thread of the shared pool.
    /// More of them than this machine has cores must not hold up another client's call (on a pool of one thread per
    /// core they did).
    @Test func callsWaitingOnAnAbsentBrokerDoNotHoldUpAnotherClientsCall() async throws {
        let cluster = try KafkaMockCluster(brokers: 1, logger: Self.logger)
        let producer = try KafkaProducer(configuration: .init(bootstrapServers: cluster.bootstrapServers), logger: Self.logger)
        // More than one per core (NIO's shared pool), fewer than the Kafka pool's 16 threads (with as many, the call
        // would rightly wait too).
        let waiters = min(ProcessInfo.processInfo.activeProcessorCount + 2, 12)
        let took = try await Self.time({ await producer.poll(timeoutMs: 0) }, behind: waiters, waitingMs: 5_000)
        // The waiters really did wait (or the test proves nothing), and the call did not wait for them.
        #expect(took.waiters >= .milliseconds(4_500), "the metadata queries took \(took.waiters)")
        // (Without the fix the call waits for a waiter to finish: 4.7 s at least. 3.5 s leaves room for a loaded
        // machine: under the parallel suite on two busy cores, a fresh-clone run measured 2.5 s.)
        #expect(took.call < .milliseconds(3_500), "a call that waits for nothing took \(took.call) behind \(waiters) waiting calls")
    }

    /// A reader's polls wait on a thread of its own: with every thread of the shared pool busy (more waiting calls
    /// than it has), the ingest poll still runs at once.
    @Test func aReadersPollDoesNotWaitForTheSharedPool() async throws {
        let cluster = try KafkaMockCluster(brokers: 1, logger: Self.logger)
        try cluster.createTopic("own.events", partitions: 1)
        let reader = try KafkaPartitionReader(bootstrapServers: cluster.bootstrapServers, pollTimeoutMs: 100, logger: Self.logger)
        try await reader.assign([TopicPartitionOffset(topic: "own.events", partition: 0, offset: 0)])
        let took = try await Self.time({ _ = await reader.poll() }, behind: 17, waitingMs: 2_000)  // 17 > the pool's 16
        await reader.close()
        // 17 waits of 2 s on 16 threads take two turns (or the shared pool was not full, and this proves nothing). Kept
        // short: while they wait, every other test's calls on the shared pool wait too.
        #expect(took.waiters >= .milliseconds(3_500), "the metadata queries took \(took.waiters)")
        // (On the shared pool the poll waits for a waiter to finish: 1.7 s at least.)
        #expect(took.call < .seconds(1), "a 100 ms poll took \(took.call) behind 17 waiting calls")
    }

    private static let logger = Logger(label: "test")

    /// Starts `waiters` metadata queries to a broker that is not there (each waits `waitMs` on a thread of the shared
    /// pool), then times `call` while they wait; returns how long it took, and how long the waiters took in all.
    private static func time(
        _ call: @escaping @Sendable () async -> Void, behind waiters: Int, waitingMs waitMs: Int32
    ) async throws -> (call: Duration, waiters: Duration) {
        let absent = try KafkaProducer(configuration: .init(bootstrapServers: "127.0.0.1:1"), logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            let started = ContinuousClock.now
            for _ in 0..<waiters {
                group.addTask { _ = await absent.topicError("absent.events", timeoutMs: waitMs) }
            }
            try await Task.sleep(for: .milliseconds(300))  // the waiters are on their threads
            let callStarted = ContinuousClock.now
            await call()
            let callTook = ContinuousClock.now - callStarted
            try await group.waitForAll()
            return (callTook, ContinuousClock.now - started)
        }
    }
}

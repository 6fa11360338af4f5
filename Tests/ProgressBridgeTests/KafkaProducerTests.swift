import CRdKafka
import Foundation
@testable import Kafka
import Logging
import Testing

@Suite("Kafka producer: delivery reports")
struct KafkaProducerTests {
    /// Commands are published up to 32 at a time, each send waiting for its delivery report. One loop serves the
    /// reports for all of them; a poll loop per waiting send kept as many of the Kafka pool's threads busy.
    @Test func sendsWaitingOnASlowBrokerShareOnePollLoop() async throws {
        let logger = Logger(label: "test")
        let cluster = try KafkaMockCluster(brokers: 1, logger: logger)
        try cluster.createTopic("sends.events", partitions: 1)
        let producer = try KafkaProducer(configuration: .init(bootstrapServers: cluster.bootstrapServers), logger: logger)
        try await producer.send(topic: "sends.events", key: nil, value: [0])  // metadata known, connection up
        cluster.setBrokerRTT(1, ms: 1_000)
        let pollsBefore = producer.pollCount
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 1...32 {
                group.addTask { try await producer.send(topic: "sends.events", key: nil, value: [UInt8(i)]) }
            }
            try await group.waitForAll()
        }
        let took = ContinuousClock.now - started
        let polls = producer.pollCount - pollsBefore
        // They really waited on the slow broker (or the count says nothing).
        #expect(took >= .milliseconds(900), "32 sends took \(took)")
        // One loop polls about ten times a second and once more per batch of reports; a loop per send polled every
        // 10 ms each: about 3,200 polls in that second.
        #expect(polls < 200, "\(polls) polls for 32 sends in \(took)")
    }

    /// A report that arrives before its sender waits for it (another poll served it) is not lost.
    @Test(.timeLimit(.minutes(1))) func aSendWhoseReportCameFirstReturns() async throws {
        let report = DeliveryReport()
        report.complete(RD_KAFKA_RESP_ERR_NO_ERROR)
        #expect(await report.outcome() == RD_KAFKA_RESP_ERR_NO_ERROR)
    }
}

import Foundation
import Kafka
import Logging
import Testing

@Suite("librdkafka statistics: per-broker round trips")
struct KafkaStatisticsTests {
    @Test func aSlowBrokerShowsInTheRoundTripStatistics() async throws {
        let logger = Logger(label: "test")
        let cluster = try KafkaMockCluster(brokers: 1, logger: logger)
        try cluster.createTopic("stats.events", partitions: 1)
        let consumer = try KafkaPartitionReader(
            bootstrapServers: cluster.bootstrapServers, properties: KafkaProperties(["statistics.interval.ms": "1000", "fetch.wait.max.ms": "10"]),
            logger: logger)
        func brokerRoundTrip() -> Double? { consumer.status.brokers.first { $0.nodeId == 1 }?.meanRoundTripSeconds }

        // Once the partition is assigned, the statistics windows hold short fetches only. Windows of a second: with
        // the fault below each still holds about four finished fetches, so none is empty.
        try await consumer.assign([TopicPartitionOffset(topic: "stats.events", partition: 0, offset: 0)])
        // The quietest window before the fault (a loaded machine — tests run in parallel — slows some windows down).
        // Up to 30 s, not a number of polls (each waits up to 100 ms for a record): under parallel tests the first
        // statistics with a finished request once took longer than 150 of them.
        var baseline = Double.infinity
        let quietDeadline = ContinuousClock.now + .seconds(30)
        while baseline >= 0.1, ContinuousClock.now < quietDeadline {
            _ = await consumer.poll()
            baseline = min(baseline, brokerRoundTrip() ?? .infinity)
        }
        cluster.setBrokerRTT(1, ms: 250)
        // The slowest window seen since (a window in which no request finished has no round trip: it is skipped). Up to
        // 30 s: under parallel tests, a statistics window with a finished request can be a long time coming.
        var slow = 0.0
        var windowsSeen = 0
        let deadline = ContinuousClock.now + .seconds(30)
        while slow < 0.25, ContinuousClock.now < deadline {
            _ = await consumer.poll()
            if let roundTrip = brokerRoundTrip() {
                windowsSeen += 1
                slow = max(slow, roundTrip)
            }
        }
        let brokersSeen = consumer.status.brokers.map { "\($0.nodeId): \($0.state)" }
        await consumer.close()
        withExtendedLifetime(cluster) {}  // (its last use above is the fault: it must outlive the reading)
        #expect(baseline < 0.1, "steady round trip before the fault: \(baseline) s; brokers at the end \(brokersSeen)")
        // The mock now delays every response by 250 ms, so no request can be faster.
        #expect(
            slow >= 0.25,
            "round trip with the fault: \(slow) s (\(windowsSeen) polls saw a window with a finished request); brokers at the end \(brokersSeen)")
        #expect(consumer.status.brokers.allSatisfy { $0.nodeId >= 0 }, "bootstrap and internal pseudo-brokers are left out")
        // The group coordinator's logical entry takes the node id of the broker it stands for: it is left out too.
        #expect(Set(consumer.status.brokers.map(\.nodeId)).count == consumer.status.brokers.count, "brokers at the end \(brokersSeen)")
    }
}

import Foundation

/// One broker as librdkafka's statistics describe it (`statistics.interval.ms`), reduced to what
/// operators watch: whether it is up and how long its requests take.
public struct KafkaBrokerStatistics: Sendable, Equatable {
    /// The broker's node id.
    public let nodeId: Int32
    /// librdkafka's connection state (`UP`, `DOWN`, `CONNECT`, …).
    public let state: String
    /// Mean round-trip time of requests in the last statistics window, in seconds; nil before any request.
    public let meanRoundTripSeconds: Double?
}

/// Decodes librdkafka's statistics JSON.
enum KafkaStatisticsDecoder {
    private struct Statistics: Decodable {
        let brokers: [String: Broker]
    }

    private struct Broker: Decodable {
        let nodeid: Int32
        let state: String
        /// `learned`, `configured`, `internal` or `logical`.
        let source: String?
        let rtt: Window?
    }

    private struct Window: Decodable {
        let avg: Int64
        let cnt: Int64
    }

    /// The real brokers, by node id; nil for a document that is not librdkafka's statistics. Left out: bootstrap and
    /// internal entries (no node id), and logical ones — the group coordinator's entry takes the node id of the
    /// broker it stands for, so a node id appeared twice, in the dictionary's (random) order, and the coordinator's
    /// quiet connection could stand for the broker's round trip.
    static func brokers(_ json: [UInt8]) -> [KafkaBrokerStatistics]? {
        guard let statistics = try? JSONDecoder().decode(Statistics.self, from: Data(json)) else { return nil }
        return statistics.brokers.values.filter { $0.nodeid >= 0 && $0.source != "logical" }
            .map { broker in
                // librdkafka reports microseconds, and an empty window as zero.
                let rtt = broker.rtt.flatMap { $0.cnt > 0 ? Double($0.avg) / 1_000_000 : nil }
                return KafkaBrokerStatistics(nodeId: broker.nodeid, state: broker.state, meanRoundTripSeconds: rtt)
            }
            .sorted { $0.nodeId < $1.nodeId }
    }
}

import Kafka
import ProgressContract

/// How a rejected event is written to the dead-letter topic: the original key, value and
/// headers (so `traceparent` survives), plus headers saying why and where it came from.
enum DeadLetter {
    static let reasonHeader = "x-dlq-reason"
    static let detailHeader = "x-dlq-detail"
    static let topicHeader = "x-dlq-source-topic"
    static let partitionHeader = "x-dlq-source-partition"
    static let offsetHeader = "x-dlq-source-offset"

    /// The headers of the dead-letter record for `message`.
    static func headers(for message: KafkaMessage, rejection: Rejection) -> [KafkaHeader] {
        let carried = message.headers.filter { !$0.name.hasPrefix("x-dlq-") }
        return carried + [
            KafkaHeader(name: reasonHeader, string: rejection.reason.rawValue),
            // Bounded: a hostile event must not make a huge header.
            KafkaHeader(name: detailHeader, string: String(rejection.detail.prefix(1024))),
            KafkaHeader(name: topicHeader, string: message.topic),
            KafkaHeader(name: partitionHeader, string: String(message.partition)),
            KafkaHeader(name: offsetHeader, string: String(message.offset)),
        ]
    }
}

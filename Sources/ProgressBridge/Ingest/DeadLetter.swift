import Crypto
import Kafka
import ProgressContract

/// How a rejected event is written to the dead-letter topic: the original key, value and
/// headers (so `traceparent` survives), plus headers saying why and where it came from.
///
/// Bounded: the record never exceeds `maxBytes` (key + value + header names and values). An original too
/// large for that keeps its first bytes, and says so: `x-dlq-truncated: true`, its size, and its SHA-256,
/// so it can be matched with the source record (whose coordinates are in the headers too).
enum DeadLetter {
    static let reasonHeader = "x-dlq-reason"
    static let detailHeader = "x-dlq-detail"
    static let topicHeader = "x-dlq-source-topic"
    static let partitionHeader = "x-dlq-source-partition"
    static let offsetHeader = "x-dlq-source-offset"
    static let truncatedHeader = "x-dlq-truncated"
    static let originalSizeHeader = "x-dlq-original-size"
    static let originalHashHeader = "x-dlq-original-sha256"
    static let headersDroppedHeader = "x-dlq-headers-dropped"
    /// Room kept for the truncation headers and Kafka's per-record overhead.
    static let reserve = 512
    /// The longest key kept; a longer one is cut (it only chooses the partition).
    static let maxKeyBytes = 1024

    /// The dead-letter record for `message`, and whether its value was truncated.
    static func record(for message: KafkaMessage, rejection: Rejection, topic: String, maxBytes: Int) -> (record: KafkaRecord, truncated: Bool) {
        var carried = message.headers.filter { !$0.name.hasPrefix("x-dlq-") }
        var headers: [KafkaHeader] = [
            KafkaHeader(name: reasonHeader, string: rejection.reason.rawValue),
            // Bounded: a hostile event must not make a huge header.
            KafkaHeader(name: detailHeader, string: String(rejection.detail.utf8.prefix(1024)) ?? String(rejection.detail.prefix(256))),
            KafkaHeader(name: topicHeader, string: message.topic),
            KafkaHeader(name: partitionHeader, string: String(message.partition)),
            KafkaHeader(name: offsetHeader, string: String(message.offset)),
        ]
        // The original's headers are kept unless they alone would take a quarter of the budget.
        if size(of: carried) > maxBytes / 4 {
            headers.append(KafkaHeader(name: headersDroppedHeader, string: String(carried.count)))
            carried = []
        }
        headers = carried + headers
        var key = message.key
        if let k = key, k.count > maxKeyBytes { key = Array(k.prefix(maxKeyBytes)) }
        let fixed = size(of: headers) + (key?.count ?? 0) + reserve
        guard fixed + message.value.count > maxBytes else {
            return (KafkaRecord(topic: topic, key: key, value: message.value, headers: headers), false)
        }
        let digest = SHA256.hash(data: message.value).map { byte in String(byte, radix: 16).leftPadded(to: 2) }.joined()
        headers += [
            KafkaHeader(name: truncatedHeader, string: "true"),
            KafkaHeader(name: originalSizeHeader, string: String(message.value.count)),
            KafkaHeader(name: originalHashHeader, string: digest),
        ]
        let room = max(0, maxBytes - fixed - 256)
        return (KafkaRecord(topic: topic, key: key, value: Array(message.value.prefix(room)), headers: headers), true)
    }

    /// The bytes of header names and values.
    static func size(of headers: [KafkaHeader]) -> Int {
        headers.reduce(0) { $0 + $1.name.utf8.count + ($1.value?.count ?? 0) + 8 }
    }
}

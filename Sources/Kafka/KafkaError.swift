import CRdKafka

/// A librdkafka failure, with its error code and a readable message.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    /// librdkafka's `rd_kafka_resp_err_t` value (0 means none; negative values are client-side).
    public let code: Int32
    /// What happened, for people.
    public let message: String

    /// Creates an error from a code and a message.
    public init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }

    init(_ err: rd_kafka_resp_err_t, context: String) {
        self.code = err.rawValue
        self.message = "\(context): \(String(cString: rd_kafka_err2str(err)))"
    }

    /// An invalid configuration property.
    static func configuration(_ message: String) -> KafkaError {
        KafkaError(code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, message: message)
    }

    public var description: String { message }

    /// Whether writing the same record again cannot succeed until someone changes something (an ACL, a
    /// topic, a size limit): too large, not authorised, no such topic, invalid record.
    public var isPermanentForProduce: Bool {
        let permanent: [rd_kafka_resp_err_t] = [
            RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
            RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC,
            RD_KAFKA_RESP_ERR_INVALID_RECORD, RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION, RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS,
        ]
        return permanent.contains { $0.rawValue == code }
    }
}

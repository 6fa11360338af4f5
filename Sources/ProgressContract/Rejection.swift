/// Why an event was not applied; each reason is a metric label and a dead-letter header.
public enum RejectionReason: String, Sendable, CaseIterable {
    /// Not UTF-8 JSON, too large, too deep, duplicate keys.
    case malformedJSON = "malformed_json"
    /// A `schema_version` newer than this bridge understands.
    case unsupportedSchemaVersion = "unsupported_schema_version"
    /// A `type` that is not one of the nine.
    case unknownType = "unknown_type"
    /// Valid JSON that the schemas reject.
    case schemaViolation = "schema_violation"
    /// A job state change the job state machine forbids.
    case invalidTransition = "invalid_transition"
    /// Beyond a configured bound of the bridge (jobs tracked, videos per job).
    case limitExceeded = "limit_exceeded"
    /// `occurred_at` too far ahead of the Kafka record's timestamp (more than the allowed clock skew).
    case implausibleTimestamp = "implausible_timestamp"
    /// An event of a job whose earlier events came from another input partition (its key is not the job id, or
    /// partitions were added to the topic mid-job): its offset cannot order it among the job's events.
    case partitionMismatch = "partition_mismatch"
}

/// An event that is not applied to any job, with a precise explanation.
public struct Rejection: Error, Sendable, Hashable, CustomStringConvertible {
    public let reason: RejectionReason
    /// For people: what exactly is wrong and where.
    public let detail: String

    public init(_ reason: RejectionReason, _ detail: String) {
        self.reason = reason
        self.detail = detail
    }

    public var description: String { "\(reason.rawValue): \(detail)" }
}

import Foundation

/// The largest `last_seq` (and job `seq`) the bridge accepts: JSON's safe-integer range, so `seq + 1`
/// can never overflow and every client language reads it exactly.
public let maxSequenceNumber: Int64 = 9_007_199_254_740_991

/// What a subscriber asked for in its connection URL.
public struct SubscriptionRequest: Sendable, Equatable {
    public let jobId: String
    public let connectionId: String
    /// `token` — checked by authentication; never logged.
    public let token: String?
    /// Resume after this bridge `seq` instead of starting with a snapshot.
    public let lastSeq: Int64?

    /// Parses and checks the query parameters; the error message names the parameter.
    public static func parse(jobId: String?, connectionId: String?, token: String?, lastSeq: String?) -> Result<SubscriptionRequest, SubscriptionError> {
        guard let jobId, !jobId.isEmpty else { return .failure(SubscriptionError("query parameter job_id is required")) }
        guard JobIdentifier.isValid(jobId) else {
            return .failure(SubscriptionError("query parameter job_id must match ^job_[A-Za-z0-9_-]{1,120}$"))
        }
        var resumeAfter: Int64?
        if let lastSeq {
            guard let value = Int64(lastSeq), value >= 0, value <= maxSequenceNumber else {
                return .failure(SubscriptionError("query parameter last_seq must be an integer from 0 to \(maxSequenceNumber)"))
            }
            resumeAfter = value
        }
        let connection: String
        if let connectionId, !connectionId.isEmpty {
            guard connectionId.utf8.count <= 128 else { return .failure(SubscriptionError("query parameter connection_id is longer than 128 bytes")) }
            connection = connectionId
        } else {
            connection = "conn_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        }
        return .success(SubscriptionRequest(jobId: jobId, connectionId: connection, token: token, lastSeq: resumeAfter))
    }
}

/// A subscription request that cannot be served.
public struct SubscriptionError: Error, Sendable, Equatable {
    public let message: String
    init(_ message: String) { self.message = message }
}

/// Job ids as the contract defines them.
public enum JobIdentifier {
    /// Whether `id` matches `^job_[A-Za-z0-9_-]{1,120}$`.
    public static func isValid(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        guard bytes.count >= 5, bytes.count <= 124, bytes.starts(with: Array("job_".utf8)) else { return false }
        return bytes.dropFirst(4).allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D
        }
    }
}

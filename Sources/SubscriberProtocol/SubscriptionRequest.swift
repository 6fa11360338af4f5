import Foundation

/// The largest `last_seq` (and job `seq`) the bridge accepts: JSON's safe-integer range, so `seq + 1`
/// can never overflow and every client language reads it exactly.
public let maxSequenceNumber: Int64 = 9_007_199_254_740_991

/// What a connection subscribes to.
public enum SubscriptionTarget: Sendable, Equatable {
    /// One job (`job_id=…`): every message of it, a `job.snapshot` first, resume by `last_seq`.
    case job(String)
    /// A job-list feed (`jobs=*` or `jobs=job_a,job_b`): the job-level messages of several jobs, a `jobs.snapshot` first.
    case jobs(JobSelection)
}

/// The jobs of a feed.
public enum JobSelection: Sendable, Equatable {
    /// Every job the token grants, including jobs that appear later.
    case all
    /// These jobs (distinct, in the order given).
    case listed([String])

    /// Whether the selection names `jobId` (the token's grant is checked apart).
    public func includes(_ jobId: String) -> Bool {
        switch self {
        case .all: true
        case .listed(let ids): ids.contains(jobId)
        }
    }
}

/// What a subscriber asked for in its connection URL.
public struct SubscriptionRequest: Sendable, Equatable {
    public let target: SubscriptionTarget
    public let connectionId: String
    /// `token` — checked by authentication; never logged.
    public let token: String?
    /// Resume after this bridge `seq` instead of starting with a snapshot (one-job subscriptions only).
    public let lastSeq: Int64?

    /// Most job ids a feed may list.
    public static let maxListedJobs = 100

    /// The job of a one-job subscription; nil for a feed.
    public var jobId: String? {
        if case .job(let id) = target { return id }
        return nil
    }

    /// Parses and checks the query parameters; the error message names the parameter.
    public static func parse(
        jobId: String?, jobs: String? = nil, connectionId: String?, token: String?, lastSeq: String?
    ) -> Result<SubscriptionRequest, SubscriptionError> {
        let target: SubscriptionTarget
        switch (jobId, jobs) {
        case (.some, .some):
            return .failure(SubscriptionError("query parameters job_id and jobs exclude each other"))
        case (nil, .some(let list)):
            guard lastSeq == nil else {
                return .failure(SubscriptionError("query parameter last_seq is for one-job subscriptions (a feed's jobs.snapshot has every job's state)"))
            }
            switch parseSelection(list) {
            case .success(let selection): target = .jobs(selection)
            case .failure(let error): return .failure(error)
            }
        case (let jobId, nil):
            guard let jobId, !jobId.isEmpty else { return .failure(SubscriptionError("query parameter job_id (or jobs) is required")) }
            guard JobIdentifier.isValid(jobId) else {
                return .failure(SubscriptionError("query parameter job_id must match ^job_[A-Za-z0-9_-]{1,120}$"))
            }
            target = .job(jobId)
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
        return .success(SubscriptionRequest(target: target, connectionId: connection, token: token, lastSeq: resumeAfter))
    }

    /// `*`, or 1 to `maxListedJobs` job ids separated by commas (repeats count once).
    private static func parseSelection(_ text: String) -> Result<JobSelection, SubscriptionError> {
        if text == "*" { return .success(.all) }
        let problem = SubscriptionError("query parameter jobs must be * or 1 to \(maxListedJobs) job ids (^job_[A-Za-z0-9_-]{1,120}$) separated by commas")
        // Bounded before splitting: a hostile list is never split into more than the cap allows.
        guard !text.isEmpty, text.utf8.count <= maxListedJobs * 125 else { return .failure(problem) }
        var ids: [String] = []
        var seen = Set<String>()
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let id = String(part)
            guard JobIdentifier.isValid(id) else { return .failure(problem) }
            if seen.insert(id).inserted { ids.append(id) }
        }
        guard ids.count <= maxListedJobs else { return .failure(problem) }
        return .success(.listed(ids))
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

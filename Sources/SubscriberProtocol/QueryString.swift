import Foundation

/// The parameters of a URL's query (`a=1&b=two%20words`), as the bridge reads them for subscriptions and the
/// REST API: percent-decoded, `+` as a space, the first value of a repeated name winning. Bounded: at most
/// `maxParameters` are read and at most `maxBytes` of the query; the rest is ignored.
public struct QueryString: Sendable, Equatable {
    public static let maxParameters = 64
    public static let maxBytes = 16 * 1024

    private var values: [String: String] = [:]

    /// Parses the part of a URL after `?` (without the `?`); `nil` is an empty query.
    public init(_ query: String?) {
        guard let query, !query.isEmpty else { return }
        for pair in query.utf8.prefix(Self.maxBytes).split(separator: UInt8(ascii: "&")).prefix(Self.maxParameters) {
            let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = Self.decode(parts[0]), !name.isEmpty, values[name] == nil else { continue }
            values[name] = parts.count == 2 ? (Self.decode(parts[1]) ?? "") : ""
        }
    }

    /// The first value of `name`, if given.
    public subscript(name: String) -> String? { values[name] }

    /// Percent-decoding of one component; `nil` when it is not valid UTF-8 after decoding.
    static func decode(_ bytes: Substring.UTF8View.SubSequence) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
            } else if b == UInt8(ascii: "%"), let h = bytes.index(i, offsetBy: 2, limitedBy: bytes.index(before: bytes.endIndex)),
                let high = hex(bytes[bytes.index(after: i)]), let low = hex(bytes[h])
            {
                out.append(high << 4 | low)
                i = h
            } else {
                out.append(b)
            }
            i = bytes.index(after: i)
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hex(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): b - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension SubscriptionRequest {
    /// Parses a subscription URL's query: `job_id` or `jobs`, `token`, `connection_id`, `last_seq`.
    public static func parse(query: QueryString) -> Result<SubscriptionRequest, SubscriptionError> {
        parse(jobId: query["job_id"], jobs: query["jobs"], connectionId: query["connection_id"], token: query["token"], lastSeq: query["last_seq"])
    }
}

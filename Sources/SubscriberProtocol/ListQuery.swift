import ProgressContract

/// A REST query parameter that cannot be used, and what it should be.
public struct QueryError: Error, Sendable, Equatable {
    public let name: String
    public let expected: String
}

/// The query of `GET /api/v1/bulk-jobs`: `state=a,b`, `limit`, `offset`.
public struct JobListQuery: Sendable, Equatable {
    public var states: Set<JobState>?
    public var limit = 100
    public var offset = 0

    /// Parses a query's parameters.
    public static func parse(_ query: QueryString) -> Result<JobListQuery, QueryError> {
        parse { query[$0] }
    }

    /// Parses the parameters that `parameter(name)` returns (the first value of each).
    public static func parse(_ parameter: (String) -> String?) -> Result<JobListQuery, QueryError> {
        var query = JobListQuery()
        switch Paging.parse(parameter) {
        case .success(let p): (query.limit, query.offset) = (p.limit, p.offset)
        case .failure(let e): return .failure(e)
        }
        switch StateFilter.parse(parameter("state"), kind: "job", as: JobState.self) {
        case .success(let s): query.states = s
        case .failure(let e): return .failure(e)
        }
        return .success(query)
    }
}

/// The query of `GET /api/v1/bulk-jobs/{id}/videos`: `state`, `sort`, `order`, `q`, `limit`, `offset`.
public struct VideoListQuery: Sendable, Equatable {
    /// The orders videos can be listed in.
    public enum SortKey: String, Sendable, CaseIterable {
        case updatedAt = "updated_at", id, state, progressPercent = "progress_percent", processingMs = "processing_ms", rowIndex = "row_index"
    }

    public var states: Set<VideoState>?
    public var sort = SortKey.updatedAt
    public var ascending = false
    /// Lower-cased search text (at most 256 characters), matched against id, title, stage and error.
    public var search: String?
    public var limit = 100
    public var offset = 0

    /// Parses a query's parameters.
    public static func parse(_ query: QueryString) -> Result<VideoListQuery, QueryError> {
        parse { query[$0] }
    }

    /// Parses the parameters that `parameter(name)` returns (the first value of each).
    public static func parse(_ parameter: (String) -> String?) -> Result<VideoListQuery, QueryError> {
        var query = VideoListQuery()
        switch Paging.parse(parameter) {
        case .success(let p): (query.limit, query.offset) = (p.limit, p.offset)
        case .failure(let e): return .failure(e)
        }
        switch StateFilter.parse(parameter("state"), kind: "video", as: VideoState.self) {
        case .success(let s): query.states = s
        case .failure(let e): return .failure(e)
        }
        if let raw = parameter("sort") {
            guard let key = SortKey(rawValue: raw) else {
                return .failure(QueryError(name: "sort", expected: "must be one of \(SortKey.allCases.map(\.rawValue).joined(separator: ", "))"))
            }
            query.sort = key
        }
        switch parameter("order") {
        case nil: query.ascending = query.sort != .updatedAt
        case "asc": query.ascending = true
        case "desc": query.ascending = false
        default: return .failure(QueryError(name: "order", expected: "must be asc or desc"))
        }
        if let q = parameter("q"), !q.isEmpty {
            guard q.count <= 256 else { return .failure(QueryError(name: "q", expected: "must be at most 256 characters")) }
            query.search = q.lowercased()
        }
        return .success(query)
    }
}

enum Paging {
    static func parse(_ parameter: (String) -> String?) -> Result<(limit: Int, offset: Int), QueryError> {
        var limit = 100
        var offset = 0
        if let raw = parameter("limit") {
            guard let v = Int(raw), (1...1000).contains(v) else { return .failure(QueryError(name: "limit", expected: "must be an integer from 1 to 1000")) }
            limit = v
        }
        if let raw = parameter("offset") {
            guard let v = Int(raw), (0...1_000_000_000).contains(v) else {
                return .failure(QueryError(name: "offset", expected: "must be an integer from 0 to 1000000000"))
            }
            offset = v
        }
        return .success((limit, offset))
    }
}

enum StateFilter {
    /// `a,b`: nil when absent; an error naming the allowed states when one is unknown.
    static func parse<State: RawRepresentable<String> & CaseIterable & Hashable>(
        _ raw: String?, kind: String, as _: State.Type
    ) -> Result<Set<State>?, QueryError> {
        guard let raw else { return .success(nil) }
        var parsed = Set<State>()
        for name in raw.split(separator: ",").prefix(64) {
            guard let state = State(rawValue: String(name)) else {
                let allowed = State.allCases.map(\.rawValue).joined(separator: ", ")
                return .failure(QueryError(name: "state", expected: "must be a comma-separated list of \(kind) states (\(allowed))"))
            }
            parsed.insert(state)
        }
        return .success(parsed)
    }
}

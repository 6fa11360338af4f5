import Hummingbird
import JSONSchema
import ProgressAggregation
import ProgressContract

/// The REST read API: `/api/v1/bulk-jobs`, `/api/v1/bulk-jobs/{id}`, `/api/v1/bulk-jobs/{id}/videos`.
struct JobsAPI<Context: RequestContext> {
    let store: JobStore
    let metrics: BridgeMetrics
    let authenticator: Authenticator

    func register(on router: Router<Context>) {
        let group = router.group("api/v1/bulk-jobs")
        group.get { request, _ in
            switch await authenticator.authenticate(token(request)) {
            case .failure(let failure): return refused(failure)
            case .success(let grant): return listJobs(request, grant: grant)
            }
        }
        group.get(":id") { request, context in
            let id = context.parameters.get("id") ?? ""
            // Authorization comes first, so a refusal never tells whether the job exists.
            if case .failure(let failure) = await authenticator.authorize(token(request), jobId: id) { return refused(failure) }
            guard let aggregate = store.aggregate(id) else { return notFound(id) }
            return JSONResponse.ok(aggregate.progress().json)
        }
        group.get(":id/videos") { request, context in
            let id = context.parameters.get("id") ?? ""
            if case .failure(let failure) = await authenticator.authorize(token(request), jobId: id) { return refused(failure) }
            guard let aggregate = store.aggregate(id) else { return notFound(id) }
            return listVideos(aggregate, request)
        }
    }

    private func token(_ request: Request) -> String? {
        Authenticator.token(authorization: request.headers[.authorization], query: request.uri.queryParameters.get("token"))
    }

    private func refused(_ failure: AuthFailure) -> Response {
        metrics.refused(failure)
        return HTTPRefusal.auth(failure).response
    }

    private func notFound(_ id: String) -> Response {
        JSONResponse.error(.notFound, code: "job_not_found", message: "no job \(id.prefix(130)) is known to this bridge")
    }

    private func badParameter(_ name: String, _ expected: String) -> Response {
        JSONResponse.error(.badRequest, code: "invalid_parameter", message: "query parameter \(name) \(expected)")
    }

    private func paging(_ request: Request, defaultLimit: Int) -> Result<(limit: Int, offset: Int), PagingError> {
        let query = request.uri.queryParameters
        var limit = defaultLimit
        var offset = 0
        if let raw = query.get("limit") {
            guard let v = Int(raw), (1...1000).contains(v) else { return .failure(PagingError(name: "limit", expected: "must be an integer from 1 to 1000")) }
            limit = v
        }
        if let raw = query.get("offset") {
            guard let v = Int(raw), v >= 0 else { return .failure(PagingError(name: "offset", expected: "must be a non-negative integer")) }
            offset = v
        }
        return .success((limit, offset))
    }

    /// `?state=a,b`: nil when absent; an error naming the allowed states when one is unknown.
    private func stateFilter<State: RawRepresentable<String> & CaseIterable & Hashable>(
        _ request: Request, kind: String, as _: State.Type
    ) -> Result<Set<State>?, PagingError> {
        guard let raw = request.uri.queryParameters.get("state") else { return .success(nil) }
        var parsed = Set<State>()
        for name in raw.split(separator: ",") {
            guard let state = State(rawValue: String(name)) else {
                let allowed = State.allCases.map(\.rawValue).joined(separator: ", ")
                return .failure(PagingError(name: "state", expected: "must be a comma-separated list of \(kind) states (\(allowed))"))
            }
            parsed.insert(state)
        }
        return .success(parsed)
    }

    private func listJobs(_ request: Request, grant: Grant) -> Response {
        let states: Set<JobState>?
        switch stateFilter(request, kind: "job", as: JobState.self) {
        case .success(let parsed): states = parsed
        case .failure(let e): return badParameter(e.name, e.expected)
        }
        let page: (limit: Int, offset: Int)
        switch paging(request, defaultLimit: 100) {
        case .success(let p): page = p
        case .failure(let e): return badParameter(e.name, e.expected)
        }
        let jobs = store.allAggregates()
            .filter { grant.allows($0.jobId) }
            .filter { states == nil || ($0.state.map { states!.contains($0) } ?? false) }
            .sorted { ($0.lastEventAt, $0.jobId) > ($1.lastEventAt, $1.jobId) }
        let slice = jobs.dropFirst(page.offset).prefix(page.limit)
        return JSONResponse.ok(
            .object([
                "jobs": .array(slice.map { $0.progress().json }),
                "total": .number(JSONNumber(Int64(jobs.count))),
                "limit": .number(JSONNumber(Int64(page.limit))),
                "offset": .number(JSONNumber(Int64(page.offset))),
            ]))
    }

    static var videoSortKeys: [String] { ["updated_at", "id", "state", "progress_percent", "processing_ms", "row_index"] }

    private func listVideos(_ aggregate: JobAggregate, _ request: Request) -> Response {
        let query = request.uri.queryParameters
        let states: Set<VideoState>?
        switch stateFilter(request, kind: "video", as: VideoState.self) {
        case .success(let parsed): states = parsed
        case .failure(let e): return badParameter(e.name, e.expected)
        }
        let sortKey = query.get("sort") ?? "updated_at"
        guard Self.videoSortKeys.contains(sortKey) else {
            return badParameter("sort", "must be one of \(Self.videoSortKeys.joined(separator: ", "))")
        }
        let order = query.get("order") ?? (sortKey == "updated_at" ? "desc" : "asc")
        guard order == "asc" || order == "desc" else { return badParameter("order", "must be asc or desc") }
        let page: (limit: Int, offset: Int)
        switch paging(request, defaultLimit: 100) {
        case .success(let p): page = p
        case .failure(let e): return badParameter(e.name, e.expected)
        }
        let needle = query.get("q")?.lowercased()
        var videos = aggregate.videos.values.filter { video in
            if let states, !states.contains(video.state) { return false }
            guard let needle, !needle.isEmpty else { return true }
            return [video.id, video.title, video.stage, video.error?.message, video.error?.code]
                .contains { $0?.lowercased().contains(needle) ?? false }
        }
        videos.sort { a, b in
            let ascending: Bool
            switch sortKey {
            case "id": ascending = a.id < b.id
            case "state": ascending = (a.state.rawValue, a.id) < (b.state.rawValue, b.id)
            case "progress_percent": ascending = (a.progressPercent ?? -1, a.id) < (b.progressPercent ?? -1, b.id)
            case "processing_ms": ascending = (a.processingMs ?? -1, a.id) < (b.processingMs ?? -1, b.id)
            case "row_index": ascending = (a.rowIndex ?? Int.max, a.id) < (b.rowIndex ?? Int.max, b.id)
            default: ascending = (a.updatedAt, a.id) < (b.updatedAt, b.id)
            }
            return order == "asc" ? ascending : !ascending
        }
        let slice = videos.dropFirst(page.offset).prefix(page.limit)
        return JSONResponse.ok(
            .object([
                "job_id": .string(aggregate.jobId),
                "videos": .array(slice.map(\.json)),
                "total": .number(JSONNumber(Int64(videos.count))),
                "limit": .number(JSONNumber(Int64(page.limit))),
                "offset": .number(JSONNumber(Int64(page.offset))),
            ]))
    }
}

/// A query parameter that cannot be used, and what it should be.
struct PagingError: Error {
    let name: String
    let expected: String
}

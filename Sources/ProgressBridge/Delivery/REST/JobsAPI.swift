import Hummingbird
import JSONSchema
import ProgressAggregation
import ProgressContract
import SubscriberProtocol

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
        Authenticator.token(authorization: request.headers[.authorization], query: QueryString(request.uri.query)["token"])
    }

    private func refused(_ failure: AuthFailure) -> Response {
        metrics.refused(failure)
        return HTTPRefusal.auth(failure).response
    }

    private func notFound(_ id: String) -> Response {
        JSONResponse.error(.notFound, code: "job_not_found", message: "no job \(id.prefix(130)) is known to this bridge")
    }

    private func badParameter(_ error: QueryError) -> Response {
        JSONResponse.error(.badRequest, code: "invalid_parameter", message: "query parameter \(error.name) \(error.expected)")
    }

    private func listJobs(_ request: Request, grant: Grant) -> Response {
        let query: JobListQuery
        switch JobListQuery.parse(QueryString(request.uri.query)) {
        case .success(let q): query = q
        case .failure(let e): return badParameter(e)
        }
        let jobs = store.allAggregates()
            .filter { grant.allows($0.jobId) }
            .filter { query.states == nil || ($0.state.map { query.states!.contains($0) } ?? false) }
            .sorted { ($0.lastEventAt, $0.jobId) > ($1.lastEventAt, $1.jobId) }
        let slice = jobs.dropFirst(query.offset).prefix(query.limit)
        return JSONResponse.ok(
            .object([
                "jobs": .array(slice.map { $0.progress().json }),
                "total": .number(JSONNumber(Int64(jobs.count))),
                "limit": .number(JSONNumber(Int64(query.limit))),
                "offset": .number(JSONNumber(Int64(query.offset))),
            ]))
    }

    private func listVideos(_ aggregate: JobAggregate, _ request: Request) -> Response {
        let query: VideoListQuery
        switch VideoListQuery.parse(QueryString(request.uri.query)) {
        case .success(let q): query = q
        case .failure(let e): return badParameter(e)
        }
        var videos = aggregate.videos.values.filter { video in
            if let states = query.states, !states.contains(video.state) { return false }
            guard let needle = query.search else { return true }
            return [video.id, video.title, video.stage, video.error?.message, video.error?.code]
                .contains { $0?.lowercased().contains(needle) ?? false }
        }
        videos.sort { a, b in
            let ascending: Bool
            switch query.sort {
            case .id: ascending = a.id < b.id
            case .state: ascending = (a.state.rawValue, a.id) < (b.state.rawValue, b.id)
            case .progressPercent: ascending = (a.progressPercent ?? -1, a.id) < (b.progressPercent ?? -1, b.id)
            case .processingMs: ascending = (a.processingMs ?? -1, a.id) < (b.processingMs ?? -1, b.id)
            case .rowIndex: ascending = (a.rowIndex ?? Int.max, a.id) < (b.rowIndex ?? Int.max, b.id)
            case .updatedAt: ascending = (a.updatedAt, a.id) < (b.updatedAt, b.id)
            }
            return query.ascending ? ascending : !ascending
        }
        let slice = videos.dropFirst(query.offset).prefix(query.limit)
        return JSONResponse.ok(
            .object([
                "job_id": .string(aggregate.jobId),
                "videos": .array(slice.map(\.json)),
                "total": .number(JSONNumber(Int64(videos.count))),
                "limit": .number(JSONNumber(Int64(query.limit))),
                "offset": .number(JSONNumber(Int64(query.offset))),
            ]))
    }
}

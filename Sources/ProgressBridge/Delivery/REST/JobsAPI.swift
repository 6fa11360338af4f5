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
            guard let progress = store.read(id, { $0.progress().json }) else { return notFound(id) }
            return JSONResponse.ok(progress)
        }
        group.get(":id/videos") { request, context in
            let id = context.parameters.get("id") ?? ""
            if case .failure(let failure) = await authenticator.authorize(token(request), jobId: id) { return refused(failure) }
            switch VideoListQuery.parse(QueryString(request.uri.query)) {
            case .failure(let e): return badParameter(e)
            case .success(let query):
                // The videos are copied out under the job's lock; the job's table itself is never held.
                guard let videos = store.read(id, { Array($0.videos.values) }) else { return notFound(id) }
                return listVideos(id, videos, query)
            }
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
        // Each job's progress is computed under its lock; no job's table is held afterwards.
        let jobs = store.readAll { job -> (id: String, lastEventAt: Int64, progress: JSONValue)? in
            guard grant.allows(job.jobId), query.states == nil || (job.state.map { query.states!.contains($0) } ?? false) else { return nil }
            return (job.jobId, job.lastEventAt, job.progress().json)
        }
        .sorted { ($0.lastEventAt, $0.id) > ($1.lastEventAt, $1.id) }
        let slice = jobs.dropFirst(query.offset).prefix(query.limit)
        return JSONResponse.ok(
            .object([
                "jobs": .array(slice.map(\.progress)),
                "total": .number(JSONNumber(Int64(jobs.count))),
                "limit": .number(JSONNumber(Int64(query.limit))),
                "offset": .number(JSONNumber(Int64(query.offset))),
            ]))
    }

    private func listVideos(_ jobId: String, _ all: [VideoProgress], _ query: VideoListQuery) -> Response {
        var videos = all.filter { video in
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
                "job_id": .string(jobId),
                "videos": .array(slice.map(\.json)),
                "total": .number(JSONNumber(Int64(videos.count))),
                "limit": .number(JSONNumber(Int64(query.limit))),
                "offset": .number(JSONNumber(Int64(query.offset))),
            ]))
    }
}

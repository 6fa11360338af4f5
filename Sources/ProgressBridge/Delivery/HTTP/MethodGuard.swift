import HTTPTypes
import Hummingbird

/// Answers 405 (with `Allow`) to a method the REST API does not take on one of its paths, instead of the router's
/// 404 — what HTTP says, and what the OpenAPI document promises. Preflights are answered before this (CORS).
struct MethodGuard<Context: RequestContext>: RouterMiddleware {
    /// The API's paths, as segments (`*`: any one segment), and the methods each takes.
    static var table: [(segments: [String], methods: [HTTPRequest.Method])] {
        [
            (["api", "v1", "bulk-jobs"], [.get, .post]),
            (["api", "v1", "bulk-jobs", "*"], [.get]),
            (["api", "v1", "bulk-jobs", "*", "videos"], [.get]),
            (["api", "v1", "bulk-jobs", "*", "pause"], [.post]),
            (["api", "v1", "bulk-jobs", "*", "resume"], [.post]),
            (["api", "v1", "bulk-jobs", "*", "cancel"], [.post]),
            (["api", "v1", "openapi.json"], [.get]),
            (["api", "v1", "asyncapi.json"], [.get]),
        ]
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let segments = request.uri.path.split(separator: "/", omittingEmptySubsequences: true)
        guard segments.first == "api",
            let entry = Self.table.first(where: { entry in
                entry.segments.count == segments.count && zip(entry.segments, segments).allSatisfy { $0 == "*" || $0 == $1 }
            }),
            !entry.methods.contains(request.method)
        else {
            return try await next(request, context)
        }
        var response = JSONResponse.error(
            .methodNotAllowed, code: "method_not_allowed", message: "\(request.method.rawValue.prefix(32)) is not served here; use \(entry.methods.map(\.rawValue).joined(separator: ", "))")
        response.headers[.allow] = entry.methods.map(\.rawValue).joined(separator: ", ")
        return response
    }
}

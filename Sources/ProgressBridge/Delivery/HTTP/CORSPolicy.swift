import HTTPTypes
import Hummingbird

/// Cross-origin access to the REST API for a dashboard served from another origin: the same origins as may open
/// WebSockets (`--allowed-origin`; none configured: any). A preflight (`OPTIONS` with
/// `Access-Control-Request-Method`) from an allowed origin gets 204 with the methods and headers the API takes; an
/// answer to an allowed origin names it in `Access-Control-Allow-Origin`; other origins get no CORS headers at all
/// (the browser then withholds the answer). No credentials mode: the API takes bearer tokens, not cookies.
struct CORSPolicy<Context: RequestContext>: RouterMiddleware {
    let authenticator: Authenticator
    /// How long a browser may cache a preflight's answer.
    static var maxAgeSeconds: Int { 600 }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin], authenticator.allowsOrigin(origin) else {
            return try await next(request, context)
        }
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            return Response(
                status: .noContent,
                headers: [
                    .accessControlAllowOrigin: origin, .vary: "Origin",
                    .accessControlAllowMethods: "GET, POST, OPTIONS",
                    .accessControlAllowHeaders: "Authorization, Content-Type, Idempotency-Key, traceparent",
                    .accessControlMaxAge: String(Self.maxAgeSeconds),
                ])
        }
        var response = try await next(request, context)
        response.headers[.accessControlAllowOrigin] = origin
        response.headers[.vary] = "Origin"
        response.headers[.accessControlExposeHeaders] = "Location, WWW-Authenticate, traceparent"
        return response
    }
}

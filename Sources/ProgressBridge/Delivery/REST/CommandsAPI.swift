import Foundation
import HTTPTypes
import Hummingbird
import JSONSchema
import NIOCore
import ProgressContract
import SubscriberProtocol

/// Job control over REST, as the seed dashboard calls it: `POST /api/v1/bulk-jobs` (create) and
/// `POST /api/v1/bulk-jobs/{id}/pause|resume|cancel`. Answers `202 Accepted` with the command once Kafka has it;
/// the job changes when the monitor's events say so (watch it on the WebSocket or the REST reads).
struct CommandsAPI<Context: RequestContext> {
    let relay: JobCommandRelay?
    let metrics: BridgeMetrics
    let authenticator: Authenticator

    func register(on router: Router<Context>) {
        let group = router.group("api/v1/bulk-jobs")
        group.post { request, context in
            await handle(.create, jobId: nil, request: request, context: context)
        }
        for kind in JobCommandKind.allCases {
            guard let action = kind.action else { continue }
            group.post(RouterPath(":id/\(action)")) { request, context in
                await handle(kind, jobId: context.parameters.get("id") ?? "", request: request, context: context)
            }
        }
    }

    private func handle(_ kind: JobCommandKind, jobId: String?, request: Request, context: Context) async -> Response {
        let token = Authenticator.token(authorization: request.headers[.authorization], query: QueryString(request.uri.query)["token"])
        let grant: Grant
        switch await authenticator.authenticate(token) {
        case .failure(let failure):
            metrics.refused(failure)
            return HTTPRefusal.auth(failure).response
        case .success(let granted): grant = granted
        }
        if let jobId, !JobIdentifier.isValid(jobId) {
            return JSONResponse.error(.notFound, code: "job_not_found", message: "no job \(jobId.prefix(130)) is known to this bridge")
        }
        guard let relay else {
            return JSONResponse.error(.serviceUnavailable, code: "commands_unavailable", message: "this bridge relays no commands")
        }
        // JSON only: a form post or a text/plain request — what another site can make a browser send without asking
        // (no CORS preflight) — never becomes a command.
        guard Self.isJSON(request.headers[.contentType]) else {
            return JSONResponse.error(.unsupportedMediaType, code: "unsupported_media_type", message: "send the command as Content-Type: application/json")
        }
        var body: [UInt8] = []
        do {
            let buffer = try await request.body.collect(upTo: JobCommandRelay.maxBodyBytes)
            body = Array(buffer.readableBytesView)
        } catch {
            return JSONResponse.error(.contentTooLarge, code: "body_too_large", message: "the request body is larger than \(JobCommandRelay.maxBodyBytes) bytes")
        }
        // The caller's trace when it sent a valid one, else a new trace: the command carries it to the monitor.
        let traceparent = TraceParent.parse(request.headers[.traceparent]) ?? TraceParent.start()
        switch await relay.submit(
            kind, jobId: jobId, body: body, grant: grant, idempotencyKey: request.headers[.idempotencyKey], traceparent: traceparent)
        {
        case .refused(let status, let code, let message):
            var response = JSONResponse.error(HTTPResponse.Status(code: status), code: code, message: message)
            response.headers[.traceparent] = traceparent
            return response
        case .accepted(let command, let repeated):
            var response = JSONResponse.ok(
                .object([
                    "command_id": .string(command.id), "job_id": .string(command.jobId), "type": .string(command.kind.rawValue),
                    "status": .string("accepted"), "repeated": .bool(repeated),
                ]),
                status: .accepted)
            if kind == .create { response.headers[.location] = "/api/v1/bulk-jobs/\(command.jobId)" }
            response.headers[.traceparent] = traceparent
            return response
        }
    }
}

extension CommandsAPI {
    /// Whether a Content-Type is JSON (`application/json`, parameters allowed).
    static func isJSON(_ contentType: String?) -> Bool {
        guard let contentType else { return false }
        return contentType.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() == "application/json"
    }
}

extension HTTPField.Name {
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let traceparent = HTTPField.Name("traceparent")!
}

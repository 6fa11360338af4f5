import Hummingbird
import HummingbirdWebSocket
import Logging

/// Builds the public router: WebSocket subscriptions on `/` and `/ws`, and the REST API.
public func buildRouter(store: JobStore, metrics: BridgeMetrics, settings: DeliverySettings, logger: Logger) -> Router<BasicWebSocketRequestContext> {
    let router = Router(context: BasicWebSocketRequestContext.self)
    for path in ["/", "/ws"] {
        router.ws(RouterPath(path)) { request, _ in
            switch parseSubscription(request) {
            case .success:
                // Authentication of `token` belongs here (issue "nobody let in").
                return .upgrade([:])
            case .failure(let error):
                throw HTTPError(.badRequest, message: error.message)
            }
        } onUpgrade: { inbound, outbound, context in
            guard case .success(let subscription) = parseSubscription(context.request) else { return }
            let session = SubscriberSession(request: subscription, store: store, metrics: metrics, settings: settings, logger: context.logger)
            try await session.run(inbound: inbound, outbound: outbound)
        }
    }
    JobsAPI<BasicWebSocketRequestContext>(store: store).register(on: router)
    return router
}

private func parseSubscription(_ request: Request) -> Result<SubscriptionRequest, SubscriptionError> {
    let query = request.uri.queryParameters
    return SubscriptionRequest.parse(
        jobId: query.get("job_id"), connectionId: query.get("connection_id"), token: query.get("token"), lastSeq: query.get("last_seq"))
}

/// Builds the admin router: `/metrics`, `/healthz`, `/readyz`.
public func buildAdminRouter(metrics: BridgeMetrics, readiness: Readiness) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    AdminAPI<BasicRequestContext>(metrics: metrics, readiness: readiness).register(on: router)
    return router
}

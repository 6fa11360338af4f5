import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore

/// Builds the public application: WebSocket subscriptions on `/` and `/ws`, the REST API beside them.
public func buildApplication(
    store: JobStore, metrics: BridgeMetrics, settings: DeliverySettings, configuration: ApplicationConfiguration,
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }, logger: Logger
) -> some ApplicationProtocol {
    Application(
        router: buildRouter(store: store),
        server: .http1WebSocketUpgrade(
            webSocketRouter: buildWebSocketRouter(store: store, metrics: metrics, settings: settings),
            configuration: .init(ws: .init(maxFrameSize: settings.maxClientMessageBytes))),
        configuration: configuration, onServerRunning: onServerRunning, logger: logger)
}

/// The REST API: `/api/v1/bulk-jobs…`.
public func buildRouter(store: JobStore) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    JobsAPI<BasicRequestContext>(store: store).register(on: router)
    return router
}

/// The WebSocket upgrade router: subscriptions on `/` and `/ws`.
public func buildWebSocketRouter(store: JobStore, metrics: BridgeMetrics, settings: DeliverySettings) -> Router<BasicWebSocketRequestContext> {
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

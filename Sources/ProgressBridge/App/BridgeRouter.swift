import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore

/// Builds the public application: WebSocket subscriptions on `/` and `/ws`, the REST API beside them.
public func buildApplication(
    store: JobStore, metrics: BridgeMetrics, settings: DeliverySettings, authenticator: Authenticator, configuration: ApplicationConfiguration,
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }, logger: Logger
) -> some ApplicationProtocol {
    Application(
        router: buildRouter(store: store, metrics: metrics, authenticator: authenticator),
        server: .http1WebSocketUpgrade(
            webSocketRouter: buildWebSocketRouter(store: store, metrics: metrics, settings: settings, authenticator: authenticator),
            configuration: .init(ws: .init(maxFrameSize: settings.maxClientMessageBytes))),
        configuration: configuration, onServerRunning: onServerRunning, logger: logger)
}

/// The REST API: `/api/v1/bulk-jobs…`.
public func buildRouter(store: JobStore, metrics: BridgeMetrics, authenticator: Authenticator) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    JobsAPI<BasicRequestContext>(store: store, metrics: metrics, authenticator: authenticator).register(on: router)
    return router
}

/// The WebSocket upgrade router: subscriptions on `/` and `/ws`.
public func buildWebSocketRouter(
    store: JobStore, metrics: BridgeMetrics, settings: DeliverySettings, authenticator: Authenticator
) -> Router<BridgeWebSocketContext> {
    let router = Router(context: BridgeWebSocketContext.self)
    let limiter = ConnectionLimiter(maxTotal: settings.maxConnections, maxPerAddress: settings.maxConnectionsPerAddress)
    for path in ["/", "/ws"] {
        router.ws(RouterPath(path)) { request, _ in
            switch parseSubscription(request) {
            case .success:
                // Tokens are checked after the upgrade: Hummingbird answers a refused upgrade with a bare
                // 400, while a close code (4401/4403) and an error frame tell a browser why.
                return .upgrade([:])
            case .failure(let error):
                throw HTTPError(.badRequest, message: error.message)
            }
        } onUpgrade: { inbound, outbound, context in
            guard case .success(let subscription) = parseSubscription(context.request) else { return }
            let address = context.requestContext.remoteAddress?.ipAddress ?? "unknown"
            if let refusal = limiter.admit(address) {
                metrics.connectionsRefused.increment()
                let reason: String
                switch refusal {
                case .total(let n): reason = "server at its limit of \(n) connections"
                case .perAddress(let n): reason = "more than \(n) connections from one address"
                }
                try await outbound.close(.unknown(1013), reason: reason)
                return
            }
            defer { limiter.release(address) }
            let headers = context.request.headers
            var verdict = await authenticator.authorize(
                Authenticator.token(authorization: headers[.authorization], query: subscription.token), jobId: subscription.jobId)
            if case .success = verdict, !authenticator.allowsOrigin(headers[.origin]) {
                verdict = .failure(AuthFailure(kind: .forbidden, message: "this Origin may not open WebSockets here"))
            }
            if case .failure(let failure) = verdict {
                metrics.refused(failure)
                let unauthorized = failure.kind == .unauthorized
                let now = SubscriberSession.nowMs()
                try await outbound.write(
                    .text(OutboundMessage.error(code: unauthorized ? "unauthorized" : "forbidden", message: failure.message, now: now).text))
                try await outbound.close(
                    .unknown(unauthorized ? BridgeCloseCode.unauthorized : BridgeCloseCode.forbidden), reason: unauthorized ? "unauthorized" : "forbidden")
                return
            }
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

/// The WebSocket request context: Hummingbird's basic one plus the peer address (for per-address limits).
public struct BridgeWebSocketContext: RequestContext, WebSocketRequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.webSocket = .init()
        self.remoteAddress = source.channel.remoteAddress
    }
}

import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import SubscriberProtocol

/// Builds the public application: WebSocket subscriptions on `/` and `/ws`, the REST API beside them, every
/// connection behind the `gate` (connection cap, request-head deadline).
public func buildApplication(
    store: JobStore, metrics: BridgeMetrics, settings: DeliverySettings, authenticator: Authenticator, configuration: ApplicationConfiguration,
    assets: WebAssets = .none, documents: APIDocuments = .none, commands: JobCommandRelay? = nil, gate: HTTPConnectionGate? = nil, onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }, logger: Logger
) -> some ApplicationProtocol {
    let refusals = UpgradeRefusals()
    let gate = gate ?? HTTPConnectionGate(settings: settings, metrics: metrics)
    let idle = settings.httpIdleTimeout.components
    let webSocketResponder = buildWebSocketRouter(
        store: store, metrics: metrics, settings: settings, authenticator: authenticator, refusals: refusals, commands: commands
    ).buildResponder()
    let channelConfiguration = HTTP1WebSocketUpgradeChannel.Configuration(
        http1: .init(
            additionalChannelHandlers: [HeadReceivedReporter(), RefusedUpgradeResponseWriter(refusals: refusals)],
            idleTimeout: .nanoseconds(idle.seconds * 1_000_000_000 + idle.attoseconds / 1_000_000_000)),
        // Text must be UTF-8 (else 1007); a client that does not answer our close frame is dropped after 3 s.
        ws: .init(maxFrameSize: settings.maxClientMessageBytes, closeTimeout: .seconds(3), validateUTF8: true))
    return Application(
        router: buildRouter(store: store, metrics: metrics, authenticator: authenticator, assets: assets, documents: documents, commands: commands),
        server: HTTPServerBuilder { responder in
            GatedChildChannel(
                inner: HTTP1WebSocketUpgradeChannel(responder: responder, webSocketResponder: webSocketResponder, configuration: channelConfiguration),
                gate: gate)
        },
        configuration: configuration, onServerRunning: onServerRunning, logger: logger)
}

/// The REST API (`/api/v1/bulk-jobs…`: reads, and job commands when `commands` relays them), with CORS for the
/// allowed origins, and the dashboard (`/`, `/static/…`).
public func buildRouter(
    store: JobStore, metrics: BridgeMetrics, authenticator: Authenticator, assets: WebAssets = .none, documents: APIDocuments = .none,
    commands: JobCommandRelay? = nil
) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: CORSPolicy(authenticator: authenticator))
    router.add(middleware: MethodGuard())
    JobsAPI<BasicRequestContext>(store: store, metrics: metrics, authenticator: authenticator).register(on: router)
    CommandsAPI<BasicRequestContext>(relay: commands, metrics: metrics, authenticator: authenticator).register(on: router)
    DashboardRoutes<BasicRequestContext>(assets: assets).register(on: router)
    for name in APIDocuments.names {
        router.get(RouterPath("api/v1/\(name)")) { _, _ in documents.response(for: name) }
    }
    return router
}

/// The WebSocket upgrade router: subscriptions on `/` and `/ws`.
///
/// The subscription and its token are checked before the upgrade: a refusal is an HTTP 400/401/403 with a
/// JSON body (recorded in `refusals`, written by ``RefusedUpgradeResponseWriter``), and no WebSocket is opened.
func buildWebSocketRouter(
    store: JobStore, metrics: BridgeMetrics, settings: DeliverySettings, authenticator: Authenticator, refusals: UpgradeRefusals,
    commands: JobCommandRelay? = nil
) -> Router<BridgeWebSocketContext> {
    let router = Router(context: BridgeWebSocketContext.self)
    let limiter = ConnectionLimiter(
        maxTotal: settings.maxConnections, maxPerAddress: settings.maxConnectionsPerAddress, maxPerSubject: settings.maxConnectionsPerSubject,
        metrics: metrics)
    for path in ["/", "/ws"] {
        router.ws(RouterPath(path)) { request, context in
            HTTPConnectionGate.headReceived(on: context.channel)
            if let refusal = await upgradeRefusal(request, authenticator: authenticator, metrics: metrics) {
                refusals.hold(refusal, for: context.channel)
                return .dontUpgrade
            }
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            let request = context.request
            guard case .success(let subscription) = parseSubscription(request) else { return }
            // Checked before the upgrade; again here for what the session needs of the grant (subject, expiry).
            let token = Authenticator.token(authorization: request.headers[.authorization], query: subscription.token)
            guard case .success(let grant) = await authenticator.authorize(token, target: subscription.target) else {
                try await outbound.close(.unknown(BridgeCloseCode.tokenExpired), reason: "token no longer valid")
                return
            }
            let peer = context.requestContext.remoteAddress?.ipAddress ?? "unknown"
            let address = TrustedProxies.limitKey(
                settings.trustedProxies.clientAddress(peer: peer, forwardedFor: request.headers[.xForwardedFor], forwarded: request.headers[.forwarded]))
            if let refusal = limiter.admit(address, subject: grant.subject) {
                metrics.connectionsRefused.increment()
                try await outbound.close(.unknown(1013), reason: refusal.reason)
                return
            }
            defer { limiter.release(address, subject: grant.subject) }
            let channel = context.requestContext.channel
            let session = SubscriberSession(
                request: subscription, grant: grant, commands: commands, store: store, metrics: metrics, settings: settings, logger: context.logger,
                expiresAt: grant.expiresAt, channel: channel, forceClose: { channel.close(promise: nil) })
            try await session.run(inbound: inbound, outbound: outbound)
        }
    }
    return router
}

/// Why an upgrade request may not become a subscription, or nil when it may: a malformed subscription (400),
/// no valid token (401), or a token that does not grant the job or an `Origin` not allowed (403).
private func upgradeRefusal(_ request: Request, authenticator: Authenticator, metrics: BridgeMetrics) async -> HTTPRefusal? {
    let subscription: SubscriptionRequest
    switch parseSubscription(request) {
    case .success(let parsed): subscription = parsed
    case .failure(let error): return .badRequest(code: "invalid_subscription", message: error.message)
    }
    let headers = request.headers
    var verdict = await authenticator.authorize(
        Authenticator.token(authorization: headers[.authorization], query: subscription.token), target: subscription.target)
    if case .success = verdict, !authenticator.allowsOrigin(headers[.origin]) {
        verdict = .failure(AuthFailure(kind: .forbidden, message: "this Origin may not open WebSockets here"))
    }
    guard case .failure(let failure) = verdict else { return nil }
    metrics.refused(failure)
    return .auth(failure)
}

private func parseSubscription(_ request: Request) -> Result<SubscriptionRequest, SubscriptionError> {
    SubscriptionRequest.parse(query: QueryString(request.uri.query))
}

/// Builds the admin router: `/metrics`, `/healthz`, `/readyz`.
public func buildAdminRouter(metrics: BridgeMetrics, readiness: Readiness) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    AdminAPI<BasicRequestContext>(metrics: metrics, readiness: readiness).register(on: router)
    return router
}

/// The WebSocket request context: Hummingbird's basic one plus the peer address (for per-address limits)
/// and the connection (to record why an upgrade is refused).
public struct BridgeWebSocketContext: RequestContext, WebSocketRequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    public let remoteAddress: SocketAddress?
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.webSocket = .init()
        self.remoteAddress = source.channel.remoteAddress
        self.channel = source.channel
    }
}

extension HTTPField.Name {
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
    static let forwarded = HTTPField.Name("Forwarded")!
}

import HTTPTypes
import Hummingbird
import HummingbirdCore
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
    let work = SubscriberWork()
    let environment = SubscriberEnvironment(
        store: store, metrics: metrics, settings: settings,
        limiter: ConnectionLimiter(
            maxTotal: settings.maxConnections, maxPerAddress: settings.maxConnectionsPerAddress, maxPerSubject: settings.maxConnectionsPerSubject,
            metrics: metrics),
        commands: commands, work: work, logger: logger)
    let admission = SubscriberAdmission(authenticator: authenticator, metrics: metrics, trustedProxies: settings.trustedProxies, refusals: refusals)
    let http1 = HTTP1Channel.Configuration(
        additionalChannelHandlers: [HeadReceivedReporter(), RefusedUpgradeResponseWriter(refusals: refusals)],
        idleTimeout: .nanoseconds(idle.seconds * 1_000_000_000 + idle.attoseconds / 1_000_000_000))
    var application = Application(
        router: buildRouter(store: store, metrics: metrics, authenticator: authenticator, assets: assets, documents: documents, commands: commands),
        server: HTTPServerBuilder { responder in
            GatedChildChannel(inner: SubscriberUpgradeChannel(responder: responder, admission: admission, environment: environment, http1: http1), gate: gate)
        },
        configuration: configuration, onServerRunning: onServerRunning, logger: logger)
    application.addServices(work)
    return application
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

/// Builds the admin router: `/metrics`, `/healthz`, `/readyz`.
public func buildAdminRouter(metrics: BridgeMetrics, readiness: Readiness) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    AdminAPI<BasicRequestContext>(metrics: metrics, readiness: readiness).register(on: router)
    return router
}

extension HTTPField.Name {
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
    static let forwarded = HTTPField.Name("Forwarded")!
}

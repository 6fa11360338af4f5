import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import SubscriberProtocol

/// The public port's connections: HTTP/1 (the REST API, the dashboard) that may upgrade to a subscriber's
/// WebSocket on `/` or `/ws`.
///
/// After an upgrade the connection belongs to its handlers (``SubscriberConnection``): Hummingbird's task for it
/// ends, so an idle subscriber keeps no suspended task. Plain HTTP connections are served by Hummingbird as usual.
struct SubscriberUpgradeChannel: ServerChildChannel, HTTPChannelHandler {
    /// What the connection became.
    enum Negotiated: Sendable {
        /// A subscriber's WebSocket, run by its pipeline's handlers.
        case subscriber
        /// Plain HTTP.
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// An upgrade request that was refused: answered with the recorded refusal (or a bare 400), then closed.
        case refusedUpgrade(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    let responder: HTTPChannelHandler.Responder
    let admission: SubscriberAdmission
    let environment: SubscriberEnvironment
    let http1: HTTP1Channel.Configuration

    init(responder: @escaping HTTPChannelHandler.Responder, admission: SubscriberAdmission, environment: SubscriberEnvironment, http1: HTTP1Channel.Configuration) {
        self.responder = Self.refusingLateUpgrades(responder)
        self.admission = admission
        self.environment = environment
        self.http1 = http1
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let upgradeAttempted = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let ticket = NIOLockedValueBox<SubscriberTicket?>(nil)
            let admission = self.admission
            let environment = self.environment
            let upgrader = NIOTypedWebSocketServerUpgrader<Negotiated>(
                maxFrameSize: environment.settings.maxClientMessageBytes,
                enableAutomaticErrorHandling: true,
                shouldUpgrade: { channel, head in
                    upgradeAttempted.value = true
                    let promise = channel.eventLoop.makePromise(of: HTTPHeaders?.self)
                    // jwt-kit's key collection is an actor: the token check, and so the decision, is async (one short task
                    // per upgrade request; the keys are local, it does not wait on the network).
                    promise.completeWithTask {
                        guard let admitted = await admission.admit(head, on: channel) else { return nil }
                        ticket.withLockedValue { $0 = admitted }
                        return HTTPHeaders()
                    }
                    return promise.futureResult
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard let admitted = ticket.withLockedValue({ $0 }) else { throw ChannelError.inappropriateOperationForState }
                        try channel.pipeline.syncOperations.addHandler(SubscriberConnection(ticket: admitted, environment: environment))
                        return Negotiated.subscriber
                    }
                })
            let http1 = self.http1
            let upgrades = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try pipeline.addHandlers(http1.additionalChannelHandlers())
                        try pipeline.addHandler(HTTPConnectionStateHandler(idleTimeout: http1.idleTimeout.map { .init($0) }, logger: logger))
                        let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        return upgradeAttempted.value ? .refusedUpgrade(http) : .http(http)
                    }
                })
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<Negotiated>(upgradeConfiguration: upgrades)
            configuration.enablePipelining = false  // Hummingbird serves one request at a time
            configuration.enableErrorHandling = false  // Hummingbird answers malformed requests
            configuration.enableResponseHeaderValidation = false  // HTTPTypes validates them already
            configuration.decoderConfiguration.maxHeaderFieldSize = http1.httpDecoder.maxHeaderFieldSize
            configuration.decoderConfiguration.maxHeaderListSize = http1.httpDecoder.maxHeaderListSize
            configuration.decoderConfiguration.maxHeaderFieldCount = http1.httpDecoder.maxHeaderFieldCount
            let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            return Value(negotiated: negotiated, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .subscriber:
                return  // the connection's handlers own it from here
            case .http(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .refusedUpgrade(let http):
                // `RefusedUpgradeResponseWriter` puts the recorded refusal (401, 403, 400 with a JSON body) in its place.
                try await http.executeThenClose { _, outbound in
                    try await outbound.write(
                        contentsOf: [.head(HTTPResponse(status: .badRequest, headerFields: [.connection: "close", .contentLength: "0"])), .end(nil)])
                }
            }
        } catch {
            logger.debug("connection ended before or while it was negotiated", metadata: ["error": "\(error)"])
        }
    }

    /// An upgrade can only be the first request of a connection: a later request asking for one is sent to a fresh
    /// connection (307 to the same URI, connection closed).
    private static func refusingLateUpgrades(_ responder: @escaping HTTPChannelHandler.Responder) -> HTTPChannelHandler.Responder {
        struct ClosingAfterRedirect: Error {}
        return { request, writer, channel in
            guard request.headers[.upgrade]?.lowercased() == "websocket" else { return try await responder(request, writer, channel) }
            var location = request.uri.path
            if let query = request.uri.query { location += "?\(query)" }
            try await writer.writeResponse(HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: location]))
            throw ClosingAfterRedirect()
        }
    }
}

/// Decides whether an upgrade request becomes a subscription, before the upgrade: the path, the subscription's
/// parameters (400), the token (401, 403) and the `Origin` (403). A refusal is recorded in `refusals` and answered
/// by ``RefusedUpgradeResponseWriter``; no WebSocket is opened.
struct SubscriberAdmission: Sendable {
    let authenticator: Authenticator
    let metrics: BridgeMetrics
    let trustedProxies: TrustedProxies
    let refusals: UpgradeRefusals
    /// The paths subscriptions are made on.
    static let paths: Set<String> = ["/", "/ws", "/ws/"]

    /// The subscription `head` asks for, if it may be made; nil: refused (the answer is recorded).
    func admit(_ head: HTTPRequestHead, on channel: any Channel) async -> SubscriberTicket? {
        HTTPConnectionGate.headReceived(on: channel)
        guard let request = try? HTTPRequest(head, secure: false, splitCookie: false) else { return nil }
        let uri = URI(request.path ?? "")
        guard Self.paths.contains(uri.path) else { return nil }
        let subscription: SubscriptionRequest
        switch SubscriptionRequest.parse(query: QueryString(uri.query)) {
        case .success(let parsed): subscription = parsed
        case .failure(let error):
            refusals.hold(.badRequest(code: "invalid_subscription", message: error.message), for: channel)
            return nil
        }
        let headers = request.headerFields
        var verdict = await authenticator.authorize(
            Authenticator.token(authorization: headers[.authorization], query: subscription.token), target: subscription.target)
        if case .success = verdict, !authenticator.allowsOrigin(headers[.origin]) {
            verdict = .failure(AuthFailure(kind: .forbidden, message: "this Origin may not open WebSockets here"))
        }
        switch verdict {
        case .failure(let failure):
            metrics.refused(failure)
            refusals.hold(.auth(failure), for: channel)
            return nil
        case .success(let grant):
            let peer = channel.remoteAddress?.ipAddress ?? "unknown"
            let address = TrustedProxies.limitKey(
                trustedProxies.clientAddress(peer: peer, forwardedFor: headers[.xForwardedFor], forwarded: headers[.forwarded]))
            return SubscriberTicket(request: subscription, grant: grant, address: address)
        }
    }
}

import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

extension ConnectFailure {
    /// Classifies an error thrown while connecting.
    init(_ error: any Error) {
        switch error {
        case let failure as ConnectFailure: self = failure
        case let error as NIOConnectionError:
            self = .connect(error.connectionErrors.first.map { Self.brief($0.error) } ?? "no address")
        case ChannelError.connectTimeout: self = .connect("timeout")
        case let error as IOError: self = .connect(Self.brief(error))
        case is ChannelError: self = .closedDuringHandshake  // e.g. I/O on a channel the bridge closed
        case let error as NIOHTTPClientUpgradeError: self = .other("upgrade: \(error)")
        default: self = .other(String(describing: type(of: error)))
        }
    }

    private static func brief(_ error: any Error) -> String {
        if let error = error as? IOError { return brief(errno: error.errnoCode) }
        if case ChannelError.connectTimeout = error { return "timeout" }
        return String(describing: type(of: error))
    }
}

/// Opens one subscription with NIO: TCP connect, HTTP upgrade to WebSocket, wait for the snapshot.
struct SubscriberConnector: Sendable {
    let target: SubscriberTarget
    /// The bridge's address, resolved once for all connections.
    let address: SocketAddress
    let token: String?
    let handshakeTimeout: TimeAmount
    let maxMessageBytes: Int

    /// One try; returns once the snapshot came, throws a ``ConnectFailure`` otherwise.
    func subscribe(job: Int, jobId: String, connectionId: String, on loop: NIOLoopBound<NIOLoopSubscribers>) async throws(ConnectFailure) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: target.hostHeader)
        let head = HTTPRequestHead(
            version: .http1_1, method: .GET, uri: target.requestURI(jobId: jobId, connectionId: connectionId, token: token), headers: headers)
        let handshakeTimeout = handshakeTimeout
        let maxMessageBytes = maxMessageBytes
        do {
            let snapshot = try await ClientBootstrap(group: loop.eventLoop)
                .connectTimeout(handshakeTimeout)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connect(to: address) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let ready = channel.eventLoop.makePromise(of: Void.self)
                        let timeout = channel.eventLoop.scheduleTask(in: handshakeTimeout) {
                            ready.fail(ConnectFailure.timedOut)
                            channel.close(promise: nil)
                        }
                        ready.futureResult.whenComplete { _ in timeout.cancel() }
                        let upgrader = SubscriberUpgrader { channel in
                            let subscribers = loop.value
                            let index = subscribers.register(job: job, channel: channel)
                            return SubscriberHandler(subscribers: subscribers, index: index, ready: ready, maxMessageBytes: maxMessageBytes)
                        }
                        let upgrade = NIOTypedHTTPClientUpgradeConfiguration<Void>(
                            upgradeRequestHead: head, upgraders: [upgrader],
                            notUpgradingCompletionHandler: { channel in
                                channel.eventLoop.makeCompletedFuture {
                                    try channel.pipeline.syncOperations.addHandler(RefusedUpgradeHandler(ready: ready))
                                }
                            })
                        var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: upgrade)
                        // The bridge sends its ack and snapshot right after the 101, often in the same read: what the
                        // HTTP decoder read past the response must reach the WebSocket decoder, not be dropped.
                        pipeline.leftOverBytesStrategy = .forwardBytes
                        let upgraded = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: pipeline)
                        upgraded.cascadeFailure(to: ready)
                        return ready.futureResult
                    }
                }
            try await snapshot.get()
        } catch {
            throw ConnectFailure(error)
        }
    }
}

/// The WebSocket upgrade (RFC 6455 §4: the key, and the server's accept checked), done by NIO's upgrader, but with
/// ``SubscriberHandler`` as the whole pipeline afterwards instead of NIO's frame encoder, decoder and error handler.
struct SubscriberUpgrader: NIOTypedHTTPClientProtocolUpgrader {
    typealias UpgradeResult = Void
    private let handshake = NIOTypedWebSocketClientUpgrader<Void>(upgradePipelineHandler: { channel, _ in channel.eventLoop.makeSucceededVoidFuture() })
    /// Makes the connection's handler, on its event loop, once the bridge accepted the upgrade.
    let makeHandler: @Sendable (any Channel) -> SubscriberHandler

    init(makeHandler: @escaping @Sendable (any Channel) -> SubscriberHandler) {
        self.makeHandler = makeHandler
    }

    var supportedProtocol: String { handshake.supportedProtocol }
    var requiredUpgradeHeaders: [String] { handshake.requiredUpgradeHeaders }

    func addCustom(upgradeRequestHeaders: inout HTTPHeaders) {
        handshake.addCustom(upgradeRequestHeaders: &upgradeRequestHeaders)
    }

    func shouldAllowUpgrade(upgradeResponse: HTTPResponseHead) -> Bool {
        handshake.shouldAllowUpgrade(upgradeResponse: upgradeResponse)
    }

    func upgrade(channel: any Channel, upgradeResponse: HTTPResponseHead) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(makeHandler(channel))
        }
    }
}

import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Synchronization

/// Guards the public port against clients that hold connections without using them:
///
/// - it counts every TCP connection (HTTP and WebSocket alike) and closes one over `maxConnections` at once, or
///   one over `maxPerAddress` from one peer address (IPv6 by /64; trusted proxies are exempt, their clients are
///   counted by the WebSocket limits);
/// - it closes a connection whose first request head has not arrived within `headTimeout` — a slowloris
///   that sends a header byte now and then never completes one. After the head, Hummingbird's idle timeout
///   governs keep-alive connections, and an upgraded WebSocket is not idle-timed at all;
/// - on shutdown it closes the connections still waiting for a head, which would otherwise hold the
///   server's graceful shutdown open.
///
/// It sits at the front of every connection's pipeline (`GatedChildChannel`), before any HTTP decoding, because
/// Hummingbird adds its own handlers only once a request head has been read.
public final class HTTPConnectionGate: Sendable {
    private let open = Atomic<Int>(0)
    private let waitingForHead = Mutex<[ObjectIdentifier: any Channel]>([:])
    private let perAddress = Mutex<[String: Int]>([:])
    let maxConnections: Int
    let maxPerAddress: Int
    let trustedProxies: TrustedProxies
    let headTimeout: TimeAmount
    let metrics: BridgeMetrics

    /// The gate the delivery settings describe.
    public convenience init(settings: DeliverySettings, metrics: BridgeMetrics) {
        self.init(
            maxConnections: settings.maxHTTPConnections, maxPerAddress: settings.maxHTTPConnectionsPerAddress,
            trustedProxies: settings.trustedProxies, headTimeout: settings.httpIdleTimeout, metrics: metrics)
    }

    /// A gate admitting `maxConnections` at once (`maxPerAddress` per peer), each given `headTimeout` for its first
    /// request head.
    public init(maxConnections: Int, maxPerAddress: Int = .max, trustedProxies: TrustedProxies = .none, headTimeout: Duration, metrics: BridgeMetrics) {
        self.maxConnections = maxConnections
        self.maxPerAddress = maxPerAddress
        self.trustedProxies = trustedProxies
        let parts = headTimeout.components
        self.headTimeout = .nanoseconds(parts.seconds * 1_000_000_000 + parts.attoseconds / 1_000_000_000)
        self.metrics = metrics
    }

    /// Counts a new connection (released when it closes), or closes it at once when the cap is reached.
    /// Returns whether it was admitted.
    func admit(_ channel: any Channel) -> Bool {
        let now = open.wrappingAdd(1, ordering: .relaxed).newValue
        metrics.httpConnections.increment()
        let key = ObjectIdentifier(channel)
        let peer = channel.remoteAddress?.ipAddress ?? "unknown"
        let address: String? = trustedProxies.trusts(peer) ? nil : TrustedProxies.limitKey(peer)
        let fromAddress = address.map { a in perAddress.withLock { $0[a, default: 0] += 1; return $0[a]! } } ?? 0
        channel.closeFuture.whenComplete { [self] _ in
            open.wrappingSubtract(1, ordering: .relaxed)
            metrics.httpConnections.decrement()
            _ = waitingForHead.withLock { $0.removeValue(forKey: key) }
            if let address {
                perAddress.withLock { map in
                    let left = map[address, default: 1] - 1
                    map[address] = left > 0 ? left : nil
                }
            }
        }
        guard now <= maxConnections, fromAddress <= maxPerAddress else {
            metrics.httpConnectionsRefused.increment()
            channel.close(promise: nil)
            return false
        }
        waitingForHead.withLock { $0[key] = channel }
        return true
    }

    /// The connection's first request head arrived (from the HTTP handlers or the WebSocket upgrade router).
    static func headReceived(on channel: any Channel) {
        channel.pipeline.fireUserInboundEventTriggered(HeadReceived())
    }

    fileprivate func headArrived(_ channel: any Channel) {
        _ = waitingForHead.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// Closes every connection still waiting for its first request head (at shutdown).
    public func closeWaitingForHead() -> Int {
        let waiting = waitingForHead.withLock { map in
            defer { map.removeAll() }
            return Array(map.values)
        }
        for channel in waiting { channel.close(promise: nil) }
        return waiting.count
    }

    /// The event that says the first request head has arrived.
    struct HeadReceived: Sendable {}
}

/// The gate's handler, first in every connection's pipeline.
final class HTTPConnectionGateHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let gate: HTTPConnectionGate
    private var deadline: Scheduled<Void>?

    init(gate: HTTPConnectionGate) { self.gate = gate }

    func handlerAdded(context: ChannelHandlerContext) {
        guard gate.admit(context.channel) else { return }
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: gate.headTimeout) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is HTTPConnectionGate.HeadReceived {
            deadline?.cancel()
            deadline = nil
            gate.headArrived(context.channel)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }
}

/// Hummingbird's HTTP/1 + WebSocket child channel with the gate's handler in front.
struct GatedChildChannel<Inner: ServerChildChannel>: ServerChildChannel {
    let inner: Inner
    let gate: HTTPConnectionGate

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Inner.Value> {
        do {
            try channel.pipeline.syncOperations.addHandler(HTTPConnectionGateHandler(gate: gate), position: .first)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return inner.setup(channel: channel, logger: logger)
    }

    func handle(value: Inner.Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

/// Reports the first request head of plain HTTP requests (and refused upgrades) to the gate. Hummingbird adds it
/// after the head is read; an accepted upgrade reports from the WebSocket router instead.
final class HeadReceivedReporter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func handlerAdded(context: ChannelHandlerContext) {
        HTTPConnectionGate.headReceived(on: context.channel)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }
}

import NIOCore
import Synchronization

/// Caps the HTTP connections open on the public port, WebSockets included, so that clients that open
/// connections and send nothing (or a byte now and then) cannot exhaust file descriptors. The idle
/// timeout closes those that stay silent; this bounds how many can be open meanwhile.
final class HTTPConnectionGate: Sendable {
    private let open = Atomic<Int>(0)
    let maxConnections: Int
    let metrics: BridgeMetrics

    init(maxConnections: Int, metrics: BridgeMetrics) {
        self.maxConnections = maxConnections
        self.metrics = metrics
    }

    /// Connections open now.
    var count: Int { open.load(ordering: .relaxed) }

    /// Counts a new connection, or closes it at once when the cap is reached. Released when the channel closes.
    func admit(_ channel: any Channel) {
        let now = open.wrappingAdd(1, ordering: .relaxed).newValue
        metrics.httpConnections.increment()
        channel.closeFuture.whenComplete { [self] _ in
            open.wrappingSubtract(1, ordering: .relaxed)
            metrics.httpConnections.decrement()
        }
        if now > maxConnections {
            metrics.httpConnectionsRefused.increment()
            channel.close(promise: nil)
        }
    }
}

/// The first handler after the HTTP codec on every connection: registers the connection with the gate.
final class HTTPConnectionGateHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let gate: HTTPConnectionGate

    init(gate: HTTPConnectionGate) { self.gate = gate }

    func handlerAdded(context: ChannelHandlerContext) {
        gate.admit(context.channel)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }
}

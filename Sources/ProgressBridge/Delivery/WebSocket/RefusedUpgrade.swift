import Hummingbird
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Refusals decided while a WebSocket upgrade was being considered, waiting to be written.
///
/// Hummingbird's upgrade path answers every refused upgrade with the same bodiless 400. The WebSocket
/// router records here why it refused (401, 403 or 400, with a JSON body), keyed by the connection, and
/// ``RefusedUpgradeResponseWriter`` — an ordinary handler in the connection's HTTP pipeline — puts that
/// answer in place of the bare one.
final class UpgradeRefusals: Sendable {
    private let pending = Mutex<[ObjectIdentifier: HTTPRefusal]>([:])

    /// Records why the upgrade on `channel` is refused. Forgotten when the connection closes, whatever happens.
    func hold(_ refusal: HTTPRefusal, for channel: any Channel) {
        let key = ObjectIdentifier(channel)
        pending.withLock { $0[key] = refusal }
        // An identifier may be reused once the channel is gone; never let a refusal outlive its connection.
        channel.closeFuture.whenComplete { [self] _ in _ = pending.withLock { $0.removeValue(forKey: key) } }
    }

    /// Takes the refusal recorded for `channel`, if any.
    func take(for channel: any Channel) -> HTTPRefusal? {
        pending.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// How many refusals wait to be written (for tests: none should linger).
    var count: Int { pending.withLock { $0.count } }
}

/// Writes a recorded refusal (status, headers, JSON body) instead of Hummingbird's bare 400 for a refused upgrade.
///
/// Sits after the HTTP codec on every HTTP/1 connection; without a recorded refusal it passes writes through.
final class RefusedUpgradeResponseWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let refusals: UpgradeRefusals
    private var refusal: HTTPRefusal?
    private var body = ByteBuffer()

    init(refusals: UpgradeRefusals) { self.refusals = refusals }

    func handlerAdded(context: ChannelHandlerContext) {
        // Added only after the upgrade was decided, so a refusal for this connection is already recorded.
        refusal = refusals.take(for: context.channel)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard let refusal else { return context.write(data, promise: promise) }
        switch unwrapOutboundIn(data) {
        case .head:
            body = refusal.body
            var fields = refusal.headers
            fields[.contentType] = "application/json; charset=utf-8"
            fields[.contentLength] = String(body.readableBytes)
            fields[.connection] = "close"
            context.write(wrapOutboundOut(.head(HTTPResponse(status: refusal.status, headerFields: fields))), promise: promise)
        case .body:
            promise?.succeed()  // the bare response has no body; ours is written with the end
        case .end:
            context.write(wrapOutboundOut(.body(body)), promise: nil)
            context.write(wrapOutboundOut(.end(nil)), promise: promise)
            self.refusal = nil
        }
    }
}

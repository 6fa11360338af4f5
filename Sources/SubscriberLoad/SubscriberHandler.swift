import NIOCore
import NIOHTTP1

/// One subscriber's connection once upgraded, in the NIO engine: the only handler on its receive path, it hands what
/// NIO reads to the connection's ``SubscriberStream`` and writes and hangs up as that says.
final class SubscriberHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let subscribers: NIOLoopSubscribers
    /// Succeeded by the first snapshot, failed if the connection ends before it.
    private let ready: EventLoopPromise<Void>
    private var stream: SubscriberStream
    /// Frames written during this read, flushed when it completes.
    private var unflushed = false

    init(subscribers: NIOLoopSubscribers, index: Int, ready: EventLoopPromise<Void>, maxMessageBytes: Int) {
        self.subscribers = subscribers
        self.ready = ready
        stream = SubscriberStream(index: index, maxMessageBytes: maxMessageBytes)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = Self.unwrapInboundIn(data)
        var lastWrite: EventLoopFuture<Void>?
        let outcome = buffer.withUnsafeReadableBytes { bytes in
            stream.read(bytes, recorder: subscribers.recorder) { frame in
                let promise = context.eventLoop.makePromise(of: Void.self)
                context.write(Self.wrapOutboundOut(context.channel.allocator.buffer(bytes: frame)), promise: promise)
                lastWrite = promise.futureResult
                unflushed = true
            }
        }
        if outcome.becameReady { ready.succeed() }
        guard outcome.hangUp else { return }
        unflushed = false
        context.flush()
        if let lastWrite {
            lastWrite.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if unflushed {
            unflushed = false
            context.flush()  // the pongs of this read
        }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        subscribers.closed(connection: stream.index, code: stream.closeCode)
        ready.fail(ConnectFailure.closedBeforeSnapshot(code: stream.closeCode))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Reads the status of an upgrade the bridge refused (401, 403, 400, …) and hangs up.
final class RefusedUpgradeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let ready: EventLoopPromise<Void>

    init(ready: EventLoopPromise<Void>) {
        self.ready = ready
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = Self.unwrapInboundIn(data) {
            ready.fail(ConnectFailure.refused(status: Int(head.status.code)))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        ready.fail(ConnectFailure.closedDuringHandshake)
        context.fireChannelInactive()
    }
}

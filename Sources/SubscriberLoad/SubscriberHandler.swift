import NIOCore
import NIOHTTP1
import NIOWebSocket

/// One subscriber's WebSocket frames: scans each text message and hands it to the loop's recorder, answers the
/// bridge's pings (it closes connections that do not answer), and answers a close frame.
final class SubscriberHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let recorder: LoopRecorder
    private let index: Int
    /// Succeeded by the first snapshot, failed if the connection ends before it.
    private let ready: EventLoopPromise<Void>
    private var closeCode: UInt16?

    init(recorder: LoopRecorder, index: Int, ready: EventLoopPromise<Void>) {
        self.recorder = recorder
        self.index = index
        self.ready = ready
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            let receivedAt = WallClock.nowMilliseconds()
            // The bridge's frames are unmasked: `data` is the payload as sent.
            let message = frame.data.withUnsafeReadableBytes { MessageScanner.scan($0) }
            if recorder.record(message, connection: index, receivedAt: receivedAt) {
                recorder.markReady(connection: index)
                ready.succeed()
            }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(Self.wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            var payload = frame.unmaskedData
            let code = payload.readInteger(as: UInt16.self) ?? 1005  // 1005: the close frame had no code
            closeCode = code
            if recorder.closing {
                context.close(promise: nil)  // the answer to the close the run sent
            } else {
                // Echo the code, as RFC 6455 asks, then hang up.
                var echo = context.channel.allocator.buffer(capacity: 2)
                echo.writeInteger(code == 1005 ? 1000 : code)
                let answer = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: echo)
                context.writeAndFlush(Self.wrapOutboundOut(answer)).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            }
        default:
            break  // binary, pongs and lone continuations mean nothing here
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        recorder.closed(connection: index, code: closeCode)
        ready.fail(ConnectFailure.closedBeforeSnapshot(code: closeCode))
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

import NIOCore
import NIOHTTP1

/// One subscriber's connection once upgraded, the only handler on its receive path: reads the bridge's frames in
/// place (``WebSocketMessageReader``), scans each text message and hands it to the loop's recorder, answers the
/// bridge's pings (it closes connections that do not answer), and answers a close frame.
final class SubscriberHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let recorder: LoopRecorder
    private let index: Int
    /// Succeeded by the first snapshot, failed if the connection ends before it.
    private let ready: EventLoopPromise<Void>
    private var reader: WebSocketMessageReader
    private var closeCode: UInt16?
    /// Set once a close frame went out: nothing is read or sent after it but the close.
    private var closing = false
    /// Pongs written during this read, flushed when it completes.
    private var unflushed = false

    init(recorder: LoopRecorder, index: Int, ready: EventLoopPromise<Void>, maxFrameBytes: Int, maxMessageBytes: Int) {
        self.recorder = recorder
        self.index = index
        self.ready = ready
        reader = WebSocketMessageReader(maxFrameBytes: maxFrameBytes, maxMessageBytes: maxMessageBytes)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let buffer = Self.unwrapInboundIn(data)
        let read = buffer.withUnsafeReadableBytes { bytes in
            Result { () throws(WebSocketMessageReader.Failure) in
                try reader.read(bytes) { kind, payload in received(kind, payload, context: context) }
            }
        }
        guard case .failure(let error) = read, !closing else { return }
        // As NIO's protocol error handler does: say why, then hang up (and count it under that code). Not a second
        // close frame, though, if the run sent one already: RFC 6455 sends nothing after it.
        closing = true
        closeCode = error.closeCode
        if recorder.closing {
            context.close(promise: nil)
        } else {
            send(ClientFrame.close(code: error.closeCode), context: context).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    private func received(_ kind: WebSocketMessageReader.Kind, _ payload: UnsafeRawBufferPointer, context: ChannelHandlerContext) {
        guard !closing else { return }
        switch kind {
        case .text:
            let receivedAt = WallClock.nowMilliseconds()
            if recorder.record(MessageScanner.scan(payload), connection: index, receivedAt: receivedAt) {
                recorder.markReady(connection: index)
                ready.succeed()
            }
        case .ping:
            send(ClientFrame.encode(opcode: 0xA, payload: payload), context: context, flush: false)
            unflushed = true
        case .close:
            // 1005: the close frame had no code.
            let code = payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : 1005
            closeCode = code
            closing = true
            if recorder.closing {
                context.close(promise: nil)  // the answer to the close the run sent
            } else {
                // Echo the code, as RFC 6455 asks, then hang up; a code that may not be sent (or a 1-byte payload) is
                // the server's protocol error.
                let answer: UInt16 = payload.isEmpty ? 1000 : payload.count >= 2 && Self.isSendable(code) ? code : 1002
                send(ClientFrame.close(code: answer), context: context).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            }
        case .binary, .pong:
            break  // they mean nothing here
        }
    }

    /// Whether a close frame may carry `code` (RFC 6455 §7.4 and the IANA registry: not 1004–1006, 1015, nor
    /// anything below 1000, from 1016 to 2999 or from 5000).
    static func isSendable(_ code: UInt16) -> Bool {
        (1000...1003).contains(code) || (1007...1014).contains(code) || (3000...4999).contains(code)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if unflushed {
            unflushed = false
            context.flush()  // the pongs of this read
        }
        context.fireChannelReadComplete()
    }

    @discardableResult
    private func send(_ frame: [UInt8], context: ChannelHandlerContext, flush: Bool = true) -> EventLoopFuture<Void> {
        let buffer = context.channel.allocator.buffer(bytes: frame)
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.write(Self.wrapOutboundOut(buffer), promise: promise)
        if flush { context.flush() }
        return promise.futureResult
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

/// One subscriber connection once upgraded, whatever carries its bytes (a NIO channel or a raw socket): reads the
/// bridge's frames in place (``WebSocketMessageReader``), records each text message with the loop's recorder,
/// answers the bridge's pings (it closes connections that do not answer) and its close frame, and refuses frames a
/// server may not send. The carrier writes what it is handed and hangs up when told.
struct SubscriberStream {
    /// The connection's index in its loop's recorder.
    let index: Int
    private var reader: WebSocketMessageReader
    /// The code of the close frame that came, or of the one sent for a bad frame; `nil`: none yet.
    private(set) var closeCode: UInt16?
    /// Set once a close frame came or went: nothing is read or sent after it but the close.
    private(set) var closing = false

    /// What a read asks of the carrier, beside the frames it handed over to be sent.
    struct Outcome: Equatable {
        /// The connection's first snapshot came in this read: it is ready.
        var becameReady = false
        /// Hang up once what was handed over is written.
        var hangUp = false
    }

    /// A stream that refuses (1009) a message over `maxMessageBytes`.
    init(index: Int, maxMessageBytes: Int) {
        self.index = index
        // The frame limit is the message limit: the bridge sends each message as one frame, so a large job's snapshot
        // is one large frame.
        reader = WebSocketMessageReader(maxFrameBytes: maxMessageBytes, maxMessageBytes: maxMessageBytes)
    }

    /// Reads the next bytes from the bridge; `send` is given each frame to write (pongs, a close), in order.
    mutating func read(_ bytes: UnsafeRawBufferPointer, recorder: LoopRecorder, send: ([UInt8]) -> Void) -> Outcome {
        guard !closing else { return Outcome() }
        // The frames' handling changes these, not `self`, which the reader (part of `self`) is changing meanwhile.
        let (read, responded) = withoutActuallyEscaping(send) { send in
            var responder = Responder(index: index, recorder: recorder, send: send)
            let read = Result { () throws(WebSocketMessageReader.Failure) in
                try reader.read(bytes) { kind, payload in responder.received(kind, payload) }
            }
            return (read, responder.result)  // not the responder: `send` must not outlive this closure
        }
        closeCode = responded.closeCode ?? closeCode
        closing = responded.closing
        var outcome = responded.outcome
        guard case .failure(let error) = read, !closing else { return outcome }
        // As NIO's protocol error handler does: say why, then hang up (and count it under that code). Not a second
        // close frame, though, if the run sent one already: RFC 6455 sends nothing after it.
        closing = true
        closeCode = error.closeCode
        if !recorder.closing { send(ClientFrame.close(code: error.closeCode)) }
        outcome.hangUp = true
        return outcome
    }

    /// What one read's frames do: record text messages, answer pings and a close.
    private struct Responder {
        let index: Int
        let recorder: LoopRecorder
        let send: ([UInt8]) -> Void
        var closeCode: UInt16?
        var closing = false
        var outcome = Outcome()

        var result: (closeCode: UInt16?, closing: Bool, outcome: Outcome) { (closeCode, closing, outcome) }

        mutating func received(_ kind: WebSocketMessageReader.Kind, _ payload: UnsafeRawBufferPointer) {
            guard !closing else { return }
            switch kind {
            case .text:
                let receivedAt = WallClock.nowMilliseconds()
                if recorder.record(MessageScanner.scan(payload), connection: index, receivedAt: receivedAt) {
                    recorder.markReady(connection: index)
                    outcome.becameReady = true
                }
            case .ping:
                send(ClientFrame.encode(opcode: 0xA, payload: payload))
            case .close:
                // 1005: the close frame had no code.
                let code = payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : 1005
                closeCode = code
                closing = true
                outcome.hangUp = true
                // The answer to the close the run sent needs none; otherwise echo the code, as RFC 6455 asks — a code
                // that may not be sent (or a 1-byte payload) is the server's protocol error.
                guard !recorder.closing else { return }
                send(ClientFrame.close(code: payload.isEmpty ? 1000 : payload.count >= 2 && SubscriberStream.isSendable(code) ? code : 1002))
            case .binary, .pong:
                break  // they mean nothing here
            }
        }
    }

    /// Whether a close frame may carry `code` (RFC 6455 §7.4 and the IANA registry: not 1004–1006, 1015, nor
    /// anything below 1000, from 1016 to 2999 or from 5000).
    static func isSendable(_ code: UInt16) -> Bool {
        (1000...1003).contains(code) || (1007...1014).contains(code) || (3000...4999).contains(code)
    }
}

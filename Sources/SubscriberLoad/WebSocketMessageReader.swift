/// Splits what a server sends on a WebSocket (RFC 6455 §5: unmasked frames) into messages, reading them in place.
///
/// The load generator's whole receive path is this and the message scanner: one handler per connection, no frame
/// values, no second buffer for whole frames that arrived whole. With 10,000 connections that matters — each message
/// touches a cold connection, and every handler and object on its way is another cache miss (`perf`: NIO's frame
/// decoder, aggregator and handler hops cost more than the `read` itself).
///
/// Bounded: a frame longer than `maxFrameBytes` or a message longer than `maxMessageBytes` is refused before any of
/// it is kept, so what a connection holds is at most one frame header and payload plus one message. Never traps on
/// any input.
public struct WebSocketMessageReader: Sendable {
    /// What a complete frame or message is.
    public enum Kind: Sendable, Equatable {
        case text, binary, ping, pong, close
    }

    /// Why the stream cannot be read on (the connection should close with `closeCode`).
    public enum Failure: Error, Sendable, Equatable {
        /// Not a frame a server may send: reserved bits or opcodes, a masked frame, a control frame that is
        /// fragmented or longer than 125 bytes, a continuation without a start, a new message inside another.
        case protocolError(String)
        /// A frame or a message over the limits.
        case tooBig

        /// The close code RFC 6455 gives it.
        public var closeCode: UInt16 {
            switch self {
            case .protocolError: 1002
            case .tooBig: 1009
            }
        }
    }

    /// The largest frame payload accepted.
    public let maxFrameBytes: Int
    /// The largest message (all its fragments) accepted.
    public let maxMessageBytes: Int
    /// The start of a frame that has not fully arrived.
    private var partialFrame: [UInt8] = []
    /// The fragments of a message so far, and its kind.
    private var fragments: [UInt8] = []
    private var fragmentedKind: Kind?

    /// Creates a reader with these limits.
    public init(maxFrameBytes: Int, maxMessageBytes: Int) {
        self.maxFrameBytes = max(0, maxFrameBytes)
        self.maxMessageBytes = max(0, maxMessageBytes)
    }

    /// Bytes held for a frame or message that has not completed.
    public var heldBytes: Int { partialFrame.count + fragments.count }

    /// Reads the next bytes of the stream and calls `body` with each complete message and control frame, in order.
    /// The buffer given to `body` is valid only during the call.
    public mutating func read(
        _ bytes: UnsafeRawBufferPointer, _ body: (Kind, UnsafeRawBufferPointer) -> Void
    ) throws(Failure) {
        if partialFrame.isEmpty {
            let consumed = try readFrames(bytes, body)
            if consumed < bytes.count { partialFrame.append(contentsOf: bytes[consumed...]) }
        } else {
            // Appended in place, so a large frame arriving in many reads is copied once, not once per read.
            partialFrame.append(contentsOf: bytes)
            let held = partialFrame
            partialFrame = []
            let read = held.withUnsafeBytes { all in Result { () throws(Failure) in try readFrames(all, body) } }
            let consumed = try read.get()
            if consumed == 0 {
                partialFrame = held  // still waiting for the rest of its first frame
            } else if consumed < held.count {
                // A right-sized copy of what is left: `removeFirst` would keep the storage of every frame held here.
                partialFrame = Array(held[consumed...])
            }  // else all of it was read, and the storage goes with `held`
        }
    }

    /// The storage this reader keeps (tests: it must not stay at the size of the largest frame once that is read).
    var storageCapacity: Int { partialFrame.capacity + fragments.capacity }

    /// Reads the complete frames at the start of `bytes`; returns how many bytes they took.
    private mutating func readFrames(_ bytes: UnsafeRawBufferPointer, _ body: (Kind, UnsafeRawBufferPointer) -> Void) throws(Failure) -> Int {
        var offset = 0
        while offset < bytes.count {
            guard let header = try FrameHeader(bytes, at: offset, maxPayload: maxFrameBytes) else { break }
            try admit(header)  // before its payload is waited for, let alone kept
            let payloadStart = offset + header.length
            // `payloadBytes` ≤ maxFrameBytes, so this cannot overflow.
            guard bytes.count - payloadStart >= header.payloadBytes else { break }
            let payload = UnsafeRawBufferPointer(rebasing: bytes[payloadStart..<(payloadStart + header.payloadBytes)])
            deliver(header, payload, body)
            offset = payloadStart + header.payloadBytes
        }
        return offset
    }

    /// Refuses, from its header, a frame that may not come now or that would take a message over its limit.
    private func admit(_ header: FrameHeader) throws(Failure) {
        switch header.opcode {
        case 0x8, 0x9, 0xA:
            guard header.fin, header.payloadBytes <= 125 else { throw .protocolError("a control frame fragmented or over 125 bytes") }
        case 0x1, 0x2:
            guard fragmentedKind == nil else { throw .protocolError("a new message inside a fragmented one") }
            guard header.payloadBytes <= maxMessageBytes else { throw .tooBig }
        case 0x0:
            guard fragmentedKind != nil else { throw .protocolError("a continuation without a message") }
            // `fragments.count` ≤ maxMessageBytes: no overflow.
            guard header.payloadBytes <= maxMessageBytes - fragments.count else { throw .tooBig }
        default:
            throw .protocolError("reserved opcode \(header.opcode)")
        }
    }

    /// Hands on a frame that ``admit(_:)`` let in, with its whole payload.
    private mutating func deliver(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, _ body: (Kind, UnsafeRawBufferPointer) -> Void) {
        switch header.opcode {
        case 0x8: body(.close, payload)
        case 0x9: body(.ping, payload)
        case 0xA: body(.pong, payload)
        case 0x1, 0x2:
            let kind: Kind = header.opcode == 0x1 ? .text : .binary
            if header.fin {
                body(kind, payload)
            } else {
                fragmentedKind = kind
                fragments.append(contentsOf: payload)
            }
        default:  // 0x0, a continuation of `fragmentedKind`
            fragments.append(contentsOf: payload)
            if header.fin, let kind = fragmentedKind {
                fragmentedKind = nil
                fragments.withUnsafeBytes { body(kind, $0) }
                fragments.removeAll(keepingCapacity: false)
            }
        }
    }
}

/// A frame's first bytes (RFC 6455 §5.2).
private struct FrameHeader {
    var fin: Bool
    var opcode: UInt8
    /// The header's own length (2, 4 or 10 bytes).
    var length: Int
    var payloadBytes: Int

    /// The header at `offset`, `nil` if it has not fully arrived; throws if it is not one a server may send or its
    /// payload is over `maxPayload`.
    init?(_ bytes: UnsafeRawBufferPointer, at offset: Int, maxPayload: Int) throws(WebSocketMessageReader.Failure) {
        guard bytes.count - offset >= 2 else { return nil }
        let first = bytes[offset]
        let second = bytes[offset + 1]
        guard first & 0x70 == 0 else { throw .protocolError("reserved bits set") }
        guard second & 0x80 == 0 else { throw .protocolError("a masked frame from the server") }
        fin = first & 0x80 != 0
        opcode = first & 0x0F
        switch second & 0x7F {
        case 126:
            guard bytes.count - offset >= 4 else { return nil }
            length = 4
            payloadBytes = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
        case 127:
            guard bytes.count - offset >= 10 else { return nil }
            length = 10
            var value: UInt64 = 0
            for i in 2..<10 { value = value << 8 | UInt64(bytes[offset + i]) }
            guard value <= UInt64(maxPayload) else { throw .tooBig }
            payloadBytes = Int(value)
        case let short:
            length = 2
            payloadBytes = Int(short)
        }
        guard payloadBytes <= maxPayload else { throw .tooBig }
    }
}

/// Client → server frames (RFC 6455 §5.3: always masked).
public enum ClientFrame {
    /// One unfragmented frame of `opcode` (0x8 close, 0x9 ping, 0xA pong, 0x1 text) with `payload` (≤ 125 bytes
    /// for control frames), masked with a random key.
    public static func encode(opcode: UInt8, payload: some Collection<UInt8>) -> [UInt8] {
        let count = payload.count
        var frame: [UInt8] = [0x80 | (opcode & 0x0F)]
        frame.reserveCapacity(14 + count)
        switch count {
        case 0..<126: frame.append(0x80 | UInt8(count))
        case 126...0xFFFF: frame += [0x80 | 126, UInt8(count >> 8), UInt8(count & 0xFF)]
        default:
            frame.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { frame.append(UInt8(truncatingIfNeeded: UInt64(count) >> UInt64(shift))) }
        }
        let key = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame += key
        for (i, byte) in payload.enumerated() { frame.append(byte ^ key[i & 3]) }
        return frame
    }

    /// A close frame with `code`.
    public static func close(code: UInt16) -> [UInt8] {
        encode(opcode: 0x8, payload: [UInt8(code >> 8), UInt8(code & 0xFF)])
    }
}

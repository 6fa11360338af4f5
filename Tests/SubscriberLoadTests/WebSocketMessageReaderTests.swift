import Testing

@testable import SubscriberLoad

struct Message: Equatable, CustomStringConvertible {
    var kind: WebSocketMessageReader.Kind
    var payload: [UInt8]
    var description: String { "\(kind)(\(payload.count) bytes)" }
}

/// Feeds `chunks` in turn; returns the messages and the failure, if any.
func read(
    _ chunks: [[UInt8]], maxFrameBytes: Int = 1 << 20, maxMessageBytes: Int = 1 << 22
) -> (messages: [Message], failure: WebSocketMessageReader.Failure?, held: Int) {
    var reader = WebSocketMessageReader(maxFrameBytes: maxFrameBytes, maxMessageBytes: maxMessageBytes)
    var messages: [Message] = []
    for chunk in chunks {
        let result = chunk.withUnsafeBytes { bytes in
            Result { () throws(WebSocketMessageReader.Failure) in
                try reader.read(bytes) { kind, payload in messages.append(Message(kind: kind, payload: Array(payload))) }
            }
        }
        if case .failure(let failure) = result { return (messages, failure, reader.heldBytes) }
    }
    return (messages, nil, reader.heldBytes)
}

@Suite("Reading a server's WebSocket frames in place")
struct WebSocketMessageReaderTests {
    static let text = Array(#"{"type":"video.updated","seq":7}"#.utf8)
    static let large = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }

    /// Text, a ping, a 16-bit length, a 64-bit length, a fragmented message with a ping between its fragments, a close.
    static let stream: [UInt8] =
        serverFrame(0x1, text) + serverFrame(0x9, [1, 2, 3]) + serverFrame(0x1, Array(large.prefix(300))) + serverFrame(0x2, large)
        + serverFrame(0x1, Array(text.prefix(10)), fin: false) + serverFrame(0x9, []) + serverFrame(0x0, Array(text.dropFirst(10).prefix(5)), fin: false)
        + serverFrame(0x0, Array(text.dropFirst(15)), fin: true) + serverFrame(0x8, [0x03, 0xE8])
    static let expected = [
        Message(kind: .text, payload: text), Message(kind: .ping, payload: [1, 2, 3]), Message(kind: .text, payload: Array(large.prefix(300))),
        Message(kind: .binary, payload: large), Message(kind: .ping, payload: []), Message(kind: .text, payload: text),
        Message(kind: .close, payload: [0x03, 0xE8]),
    ]

    @Test("frames that arrive whole, in one read")
    func whole() {
        let result = read([Self.stream])
        #expect(result.failure == nil)
        #expect(result.messages == Self.expected)
        #expect(result.held == 0)
    }

    @Test("the same stream split at every point of its first 400 bytes and around the large frame, and byte by byte")
    func splits() {
        var points = Array(1..<400)
        points += [Self.stream.count - 100, Self.stream.count - 20, Self.stream.count - 1]
        #expect(points.count == 402)
        for point in points {
            let result = read([Array(Self.stream[..<point]), Array(Self.stream[point...])])
            #expect(result.failure == nil, "split at \(point)")
            #expect(result.messages == Self.expected, "split at \(point)")
            #expect(result.held == 0)
        }
        let byteByByte = read(Self.stream.map { [$0] })
        #expect(byteByByte.messages == Self.expected)
        #expect(byteByByte.held == 0)
    }

    @Test("what is held for an incomplete frame is that frame only")
    func held() {
        let partial = Array(serverFrame(0x1, Self.text).dropLast(5))
        let result = read([serverFrame(0x1, Self.text) + partial])
        #expect(result.messages == [Message(kind: .text, payload: Self.text)])
        #expect(result.held == partial.count)
    }

    @Test("a large frame read over many reads leaves no storage of its size behind")
    func storageReleased() {
        var reader = WebSocketMessageReader(maxFrameBytes: 1 << 20, maxMessageBytes: 1 << 20)
        let stream = serverFrame(0x1, Self.large) + serverFrame(0x1, Self.text)
        var messages: [Message] = []
        var offset = 0
        while offset < stream.count {
            let chunk = Array(stream[offset..<min(stream.count, offset + 4096)])
            offset += chunk.count
            try? chunk.withUnsafeBytes { bytes in
                try reader.read(bytes) { kind, payload in messages.append(Message(kind: kind, payload: Array(payload))) }
            }
        }
        #expect(messages == [Message(kind: .text, payload: Self.large), Message(kind: .text, payload: Self.text)])
        #expect(reader.heldBytes == 0)
        #expect(reader.storageCapacity < 4096, "\(reader.storageCapacity) bytes kept")
    }

    @Test("a bad control frame or an over-long continuation is refused from its header, before its payload comes")
    func refusedFromHeader() {
        // Headers only: a ping declaring 126 bytes; a continuation that would take the message past 150 bytes.
        #expect(read([[0x89, 126, 0, 126]]).failure == .protocolError("a control frame fragmented or over 125 bytes"))
        #expect(read([[0x09, 10]]).failure == .protocolError("a control frame fragmented or over 125 bytes"))
        let start = serverFrame(0x1, [UInt8](repeating: 0x41, count: 100), fin: false)
        let result = read([start + [0x80, 60]], maxFrameBytes: 100, maxMessageBytes: 150)
        #expect(result.failure == .tooBig)
        #expect(result.messages.isEmpty)
    }

    @Test(
        "frames a server may not send are refused, with 1002",
        arguments: [
            ("reserved bits", [0xC1, 0x00]),
            ("masked", [0x81, 0x80, 1, 2, 3, 4]),
            ("reserved opcode", [0x83, 0x00]),
            ("control frame fragmented", [0x09, 0x00]),
            ("control frame over 125 bytes", [0x89, 126, 0, 126] + [UInt8](repeating: 0, count: 126)),
            ("continuation without a message", [0x80, 0x00]),
            ("message inside a message", [0x01, 0x01, 0x41, 0x81, 0x01, 0x42]),
        ] as [(String, [UInt8])])
    func refused(_ name: String, _ bytes: [UInt8]) {
        let result = read([bytes])
        guard case .protocolError = result.failure else {
            Issue.record("\(name): \(String(describing: result.failure))")
            return
        }
        #expect(result.failure?.closeCode == 1002)
    }

    @Test("a frame or message over the limits is refused (1009) from its header, before any of it is kept")
    func limits() {
        // A 64-bit length near 2^63: no arithmetic may trap, nothing is allocated for it.
        let huge: [UInt8] = [0x81, 127, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF0]
        let hugeResult = read([huge])
        #expect(hugeResult.failure == .tooBig)
        #expect(hugeResult.failure?.closeCode == 1009)
        #expect(hugeResult.held == 0)
        #expect(read([serverFrame(0x1, [UInt8](repeating: 0x41, count: 101))], maxFrameBytes: 100).failure == .tooBig)
        #expect(read([Array(serverFrame(0x1, [UInt8](repeating: 0x41, count: 101)).prefix(4))], maxFrameBytes: 100).failure == .tooBig)
        // Fragments of 60 bytes each: the third passes the message limit of 150.
        let fragment = [UInt8](repeating: 0x41, count: 60)
        let fragmented = serverFrame(0x1, fragment, fin: false) + serverFrame(0x0, fragment, fin: false) + serverFrame(0x0, fragment, fin: true)
        let result = read([fragmented], maxFrameBytes: 100, maxMessageBytes: 150)
        #expect(result.failure == .tooBig)
        #expect(result.messages.isEmpty)
        #expect(read([fragmented], maxFrameBytes: 100, maxMessageBytes: 180).messages == [Message(kind: .text, payload: fragment + fragment + fragment)])
    }

    @Test("client frames are masked, with the lengths RFC 6455 gives", arguments: [0, 2, 125, 126, 65_535, 65_536])
    func clientFrames(length: Int) {
        let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0) }
        let encoded = ClientFrame.encode(opcode: 0xA, payload: payload)
        #expect(encoded[0] == 0x8A)
        #expect(encoded[1] & 0x80 == 0x80)
        let headerLength = length < 126 ? 2 : length <= 0xFFFF ? 4 : 10
        #expect(Int(encoded[1] & 0x7F) == (length < 126 ? length : length <= 0xFFFF ? 126 : 127))
        #expect(encoded.count == headerLength + 4 + length)
        let lengthField = encoded[2..<headerLength].reduce(0) { $0 << 8 | Int($1) }
        #expect(headerLength == 2 || lengthField == length)
        let key = Array(encoded[headerLength..<(headerLength + 4)])
        let unmasked = encoded[(headerLength + 4)...].enumerated().map { $0.element ^ key[$0.offset & 3] }
        #expect(unmasked == payload)
    }

    @Test("a close frame carries its code")
    func close() {
        let encoded = ClientFrame.close(code: 4001)
        #expect(encoded.count == 8)
        let key = Array(encoded[2..<6])
        #expect([encoded[6] ^ key[0], encoded[7] ^ key[1]] == [0x0F, 0xA1])
    }
}

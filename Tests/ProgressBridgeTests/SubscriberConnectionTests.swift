import Foundation
import NIOCore
import NIOEmbedded
import NIOWebSocket
import SubscriberProtocol
import Testing

@testable import ProgressBridge

/// The subscriber connection's WebSocket handling, on an embedded channel: frames in, the bytes it writes out.
@Suite("A subscriber's WebSocket, on its handlers")
struct SubscriberConnectionTests {
    /// A frame the server wrote (servers do not mask).
    struct ServerFrame: Equatable {
        let opcode: UInt8
        let payload: [UInt8]
        var closeCode: UInt16? { opcode == 0x8 && payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil }
        var text: String { String(decoding: payload, as: UTF8.self) }
    }

    /// A client that stopped reading: every write stays pending, its promise never completes.
    final class StalledWrites: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = NIOAny
        private var pending: [EventLoopPromise<Void>] = []
        /// Writes held back (with a promise or without).
        private(set) var held = 0
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            held += 1
            if let promise { pending.append(promise) }
        }
        func flush(context: ChannelHandlerContext) {}
        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            // The socket goes: what was pending fails, as NIO fails a closed socket's writes.
            for promise in pending { promise.fail(ChannelError.ioOnClosedChannel) }
            pending = []
            context.close(mode: mode, promise: promise)
        }
    }

    final class Harness {
        let channel = EmbeddedChannel()
        let metrics = BridgeMetrics()
        let store: JobStore
        let limiter: ConnectionLimiter
        private var written: [UInt8] = []

        /// `clientFrameRate`: the client's frames per second (bursts of twice that), instead of the settings' own.
        init(
            settings: DeliverySettings = DeliverySettings(), clientFrameRate: Double? = nil, expiresAt: Date? = nil, limiterTotal: Int = 10,
            stalled: StalledWrites? = nil
        ) throws {
            var settings = settings
            if let clientFrameRate { settings.clientMessagesPerSecond = clientFrameRate }
            store = JobStore(metrics: metrics)
            limiter = ConnectionLimiter(maxTotal: limiterTotal, maxPerAddress: 10, metrics: metrics)
            let request = try SubscriptionRequest.parse(jobId: "job_1", connectionId: "conn_1", token: nil, lastSeq: nil).get()
            let environment = SubscriberEnvironment(
                store: store, metrics: metrics, settings: settings, limiter: limiter, logger: .init(label: "test"), closeTimeout: .seconds(3),
                pingInterval: .seconds(30))
            let ticket = SubscriberTicket(request: request, grant: Grant(allJobs: true, jobs: [], expiresAt: expiresAt), address: "10.0.0.1")
            if let stalled { try channel.pipeline.syncOperations.addHandler(stalled) }
            try channel.pipeline.syncOperations.addHandler(WebSocketFrameEncoder())
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            try channel.pipeline.syncOperations.addHandler(SubscriberConnection(ticket: ticket, environment: environment))
        }

        /// Sends a client frame (masked, as clients must, unless told otherwise).
        func send(_ opcode: WebSocketOpcode, _ bytes: [UInt8], fin: Bool = true, masked: Bool = true) throws {
            var data = channel.allocator.buffer(bytes: bytes)
            let key: WebSocketMaskingKey? = masked ? WebSocketMaskingKey([1, 2, 3, 4])! : nil
            if let key { data.webSocketMask(key) }
            try channel.writeInbound(WebSocketFrame(fin: fin, opcode: opcode, maskKey: key, data: data))
        }

        func sendText(_ text: String) throws { try send(.text, Array(text.utf8)) }

        /// Runs what the event loop has queued, and returns every frame written since the last call.
        func frames() throws -> [ServerFrame] {
            channel.embeddedEventLoop.run()
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { written += buffer.readableBytesView }
            var frames: [ServerFrame] = []
            var at = 0
            while written.count - at >= 2 {
                let opcode = written[at] & 0x0F
                var length = Int(written[at + 1] & 0x7F)
                var header = 2
                if length == 126 {
                    guard written.count - at >= 4 else { break }
                    length = Int(written[at + 2]) << 8 | Int(written[at + 3])
                    header = 4
                } else if length == 127 {
                    guard written.count - at >= 10 else { break }
                    length = (0..<8).reduce(0) { $0 << 8 | Int(written[at + 2 + $1]) }
                    header = 10
                }
                guard written.count - at >= header + length else { break }
                frames.append(ServerFrame(opcode: opcode, payload: Array(written[(at + header)..<(at + header + length)])))
                at += header + length
            }
            written.removeFirst(at)
            return frames
        }

        /// The open-connections gauge, as `/metrics` shows it.
        var openConnections: Int? { sample("progress_bridge_websocket_connections") }

        /// A metric's value, as `/metrics` shows it.
        func sample(_ name: String) -> Int? {
            metrics.render().split(separator: "\n").first { $0.hasPrefix(name + " ") }
                .flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) }
        }
    }

    @Test func aSubscriberIsAcknowledgedAndAnswered() throws {
        let harness = try Harness()
        let first = try harness.frames()
        #expect(first.count >= 1, "ack (and snapshot)")
        #expect(first.first?.text.contains(#""type":"connection.ack""#) == true)
        #expect(harness.openConnections == 1)
        try harness.sendText(#"{"type":"ping","id":"p1"}"#)
        let answer = try harness.frames()
        #expect(answer.count == 1)
        #expect(answer.first?.text.contains(#""type":"pong""#) == true && answer.first?.text.contains("p1") == true)
        // A WebSocket ping gets a pong with its payload.
        try harness.send(.ping, [9, 8, 7])
        #expect(try harness.frames() == [ServerFrame(opcode: 0xA, payload: [9, 8, 7])])
        // A fragmented text message is put together.
        try harness.send(.text, Array(#"{"type":"pi"#.utf8), fin: false)
        try harness.send(.continuation, Array(#"ng"}"#.utf8))
        #expect(try harness.frames().first?.text.contains(#""type":"pong""#) == true)
    }

    @Test func theClientsCloseIsAnsweredAndEverythingIsGivenBack() throws {
        let harness = try Harness()
        _ = try harness.frames()
        try harness.send(.connectionClose, [0x03, 0xE8] + Array("bye".utf8))
        #expect(try harness.frames() == [ServerFrame(opcode: 0x8, payload: [0x03, 0xE8])])
        #expect(!harness.channel.isActive)
        #expect(harness.openConnections == 0)
        #expect(harness.store.subscriberCount == 0)
        #expect(harness.limiter.admit("10.0.0.1") == nil, "the slot was given back")
    }

    @Test(arguments: [
        ("unmasked", 1002), ("reserved bits", 1002), ("continuation without a start", 1002), ("a new message inside a fragmented one", 1002),
        ("invalid UTF-8", 1007), ("too large when put together", 1009), ("reserved opcode", 1002),
    ])
    func aClientThatBreaksTheProtocolIsClosedWithItsCode(how: String, code: Int) throws {
        var settings = DeliverySettings()
        settings.maxClientMessageBytes = 100
        let harness = try Harness(settings: settings)
        _ = try harness.frames()
        switch how {
        case "unmasked": try harness.send(.text, Array(#"{"type":"ping"}"#.utf8), masked: false)
        case "reserved bits":
            var data = harness.channel.allocator.buffer(string: "{}")
            data.webSocketMask(WebSocketMaskingKey([1, 2, 3, 4])!)
            try harness.channel.writeInbound(WebSocketFrame(fin: true, rsv2: true, opcode: .text, maskKey: WebSocketMaskingKey([1, 2, 3, 4])!, data: data))
        case "continuation without a start": try harness.send(.continuation, Array("{}".utf8))
        case "a new message inside a fragmented one":
            try harness.send(.text, Array("{".utf8), fin: false)
            try harness.send(.text, Array("}".utf8))
        case "invalid UTF-8": try harness.send(.text, [0x22, 0xC3, 0x28, 0x22])
        case "too large when put together":
            try harness.send(.text, Array(repeating: 0x20, count: 80), fin: false)
            try harness.send(.continuation, Array(repeating: 0x20, count: 80))
        default: try harness.send(WebSocketOpcode(encodedWebSocketOpcode: 0x3)!, [1])
        }
        let frames = try harness.frames()
        #expect(frames.last?.closeCode == UInt16(code), "\(how): \(frames)")
        #expect(!harness.channel.isActive)
        #expect(harness.openConnections == 0)
    }

    @Test func aClientThatShutsItsSideIsGoneAtOnce() throws {
        let harness = try Harness()
        _ = try harness.frames()
        harness.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        harness.channel.embeddedEventLoop.run()
        #expect(!harness.channel.isActive)
        #expect(harness.openConnections == 0)
        #expect(harness.store.subscriberCount == 0)
    }

    @Test func aFloodingClientIsClosedWith1008AfterItsAllowance() throws {
        let harness = try Harness(clientFrameRate: 5)  // bursts of 10
        _ = try harness.frames()
        for _ in 0..<5 { try harness.send(.ping, [1]) }
        for _ in 0..<6 { try harness.send(.pong, [2]) }  // unasked pongs count too
        let frames = try harness.frames()
        #expect(frames.filter { $0.opcode == 0xA }.count == 5)
        #expect(frames.last?.closeCode == 1008)
        // The client's close completes the handshake.
        try harness.send(.connectionClose, [0x03, 0xF0])
        _ = try harness.frames()
        #expect(!harness.channel.isActive)
        #expect(harness.openConnections == 0)
    }

    @Test func aFloodReadAtOnceIsOneCloseOneCountAndTheRestDropped() throws {
        let harness = try Harness(clientFrameRate: 5)  // bursts of 10
        _ = try harness.frames()
        // Read before the loop gets to run anything else: the allowance's end must stop it there and then.
        for _ in 0..<200 { try harness.send(.ping, [1]) }
        let frames = try harness.frames()
        #expect(frames.filter { $0.opcode == 0xA }.count == 10)
        #expect(frames.filter { $0.opcode == 0x8 }.map(\.closeCode) == [1008])
        #expect(harness.sample("progress_bridge_websocket_policy_closes_total") == 1)
    }

    @Test func emptyFragmentsCountAgainstTheRate() throws {
        let harness = try Harness(clientFrameRate: 5)  // bursts of 10
        _ = try harness.frames()
        try harness.send(.text, [], fin: false)
        for _ in 0..<20 { try harness.send(.continuation, [], fin: false) }
        #expect(try harness.frames().last?.closeCode == 1008)
    }

    /// However the closing starts, a client that reads nothing more cannot keep the connection: its close frame (or
    /// ours) never leaves, and the deadline closes it.
    @Test(arguments: ["the client's close", "a protocol error", "too fast", "our close"])
    func aClosingConnectionToAClientThatStoppedReadingIsCutAfterTheTimeout(how: String) throws {
        let stalled = StalledWrites()
        let harness = try Harness(clientFrameRate: 5, stalled: stalled)
        #expect(try harness.frames().isEmpty, "nothing leaves")
        #expect(harness.openConnections == 1)
        switch how {
        case "the client's close": try harness.send(.connectionClose, [0x03, 0xE8])
        case "a protocol error": try harness.send(.text, [1], masked: false)
        case "too fast": for _ in 0..<20 { try harness.send(.ping, [1]) }
        default: harness.store.closeAllSubscribers(.shuttingDown)
        }
        harness.channel.embeddedEventLoop.run()
        #expect(stalled.held > 0)
        #expect(harness.channel.isActive, "\(how): waits for its frame to leave")
        harness.channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        #expect(!harness.channel.isActive, "\(how): closed at the deadline")
        #expect(harness.openConnections == 0)
        #expect(harness.store.subscriberCount == 0)
        #expect(harness.limiter.admit("10.0.0.1") == nil, "the slot was given back")
    }

    @Test func aClientThatNeverAnswersOurCloseIsCutAfterTheTimeout() throws {
        let harness = try Harness()
        _ = try harness.frames()
        harness.store.closeAllSubscribers(.shuttingDown)
        #expect(try harness.frames().last?.closeCode == 1001)
        #expect(harness.channel.isActive)
        harness.channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        #expect(!harness.channel.isActive)
        #expect(harness.openConnections == 0)
    }

    @Test func anExpiredTokenClosesWith4401AndAnUnansweredPingWith1001() throws {
        let expiring = try Harness(expiresAt: Date().addingTimeInterval(5))
        _ = try expiring.frames()
        expiring.channel.embeddedEventLoop.advanceTime(by: .seconds(6))
        #expect(try expiring.frames().last?.closeCode == 4401)

        let silent = try Harness()
        _ = try silent.frames()
        silent.channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        let ping = try silent.frames()
        #expect(ping.count == 1 && ping.first?.opcode == 0x9)
        silent.channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(try silent.frames().last?.closeCode == 1001)
        silent.channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        #expect(!silent.channel.isActive)
        #expect(silent.openConnections == 0)
    }

    @Test func aPongKeepsTheConnection() throws {
        let harness = try Harness()
        _ = try harness.frames()
        for _ in 0..<3 {
            harness.channel.embeddedEventLoop.advanceTime(by: .seconds(30))
            let ping = try harness.frames()
            #expect(ping.count == 1 && ping.first?.opcode == 0x9)
            try harness.send(.pong, ping.first?.payload ?? [])
        }
        #expect(harness.channel.isActive)
    }

    @Test func overTheConnectionLimitTheUpgradedConnectionIsClosedWith1013() throws {
        let harness = try Harness(limiterTotal: 0)
        let frames = try harness.frames()
        #expect(frames.count == 1 && frames.first?.closeCode == 1013)
        #expect(harness.openConnections == 0)
        try harness.send(.connectionClose, [0x03, 0xE8])
        _ = try harness.frames()
        #expect(!harness.channel.isActive)
    }

    @Test(arguments: [
        ([UInt8](), 1000), ([0x03], 1002), ([0x03, 0xE8], 1000), ([0x0F, 0xA0], 1000), ([0x03, 0xED], 1002), ([0x03, 0xE8, 0xFF], 1007),
        ([0x13, 0x88], 1002), ([0x03, 0xF4], 1000), ([0x03, 0xF6], 1000), ([0x03, 0xF7], 1002), ([0x03, 0xEE], 1002),
        ([0x0B, 0xB7], 1002),
    ])
    func theAnswerToACloseFollowsRFC6455(payload: [UInt8], code: Int) {
        let answer = SubscriberConnection.answer(toClose: ByteBuffer(bytes: payload))
        #expect(answer == WebSocketErrorCode(codeNumber: code))
    }
}

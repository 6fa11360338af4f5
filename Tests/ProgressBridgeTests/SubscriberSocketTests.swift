#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOEmbedded
import NIOPosix
import NIOWebSocket
import Dispatch
import Synchronization
import Testing

@testable import ProgressBridge

/// A subscriber's messages go straight to its socket (``SubscriberSocket``) on a real TCP connection, and whatever
/// the socket does not take — or anything NIO holds before it — goes through NIO, in order, byte for byte.
@Suite("Subscriber socket written directly")
struct SubscriberSocketTests {
    /// Counts the writes that reach NIO's head, i.e. that went through NIO's write path.
    final class HeadWrites: ChannelOutboundHandler, Sendable {
        typealias OutboundIn = NIOAny
        let count = Atomic<Int>(0)
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            count.add(1, ordering: .relaxed)
            context.write(data, promise: promise)
        }
    }

    /// Attaches the drain once the accepted channel is active, as the bridge does after the upgrade.
    final class AttachWhenActive: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = NIOAny
        let outbox: Outbox
        let metrics: BridgeMetrics
        let attached: EventLoopPromise<any Channel>
        init(outbox: Outbox, metrics: BridgeMetrics, attached: EventLoopPromise<any Channel>) {
            (self.outbox, self.metrics, self.attached) = (outbox, metrics, attached)
        }
        func channelActive(context: ChannelHandlerContext) {
            do {
                try SubscriberChannelDrain.attach(outbox, to: context.channel, metrics: metrics)
                attached.succeed(context.channel)
            } catch {
                attached.fail(error)
            }
            context.fireChannelActive()
        }
    }

    /// A server channel on loopback whose one connection delivers `outbox`, and a plain socket connected to it.
    struct Connection {
        let group: MultiThreadedEventLoopGroup
        let server: any Channel
        let channel: any Channel
        let client: CInt
        let headWrites: HeadWrites
        /// The subscriber's outbox, delivered on the connection's event loop.
        let outbox: Outbox

        init(outboxCapacity: Int, metrics: BridgeMetrics, smallBuffers: Bool) throws {
            let made = Mutex<Outbox?>(nil)
            group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let loop = group.next()
            let attached = loop.makePromise(of: (any Channel).self)
            let headWrites = HeadWrites()
            self.headWrites = headWrites
            var bootstrap = ServerBootstrap(group: group)
            if smallBuffers { bootstrap = bootstrap.childChannelOption(.socketOption(.so_sndbuf), value: 4096) }
            server = try bootstrap.childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(headWrites, position: .first)
                    try pipeline.addHandler(WebSocketFrameEncoder())
                    let outbox = Outbox(capacity: outboxCapacity, metrics: metrics, deliveredOn: channel.eventLoop)
                    made.withLock { $0 = outbox }
                    try pipeline.addHandler(AttachWhenActive(outbox: outbox, metrics: metrics, attached: attached))
                }
            }.bind(host: "127.0.0.1", port: 0).wait()
            let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            if smallBuffers {
                var size: CInt = 4096
                setsockopt(client, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<CInt>.size))
            }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(server.localAddress!.port!).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            #expect(connected == 0)
            self.client = client
            channel = try attached.futureResult.wait()
            outbox = try #require(made.withLock { $0 })
        }

        /// Reads exactly `count` bytes from the client's side.
        func read(_ count: Int) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: count)
            var got = 0
            while got < count {
                let n = bytes.withUnsafeMutableBytes { recv(client, $0.baseAddress! + got, count - got, 0) }
                guard n > 0 else { break }
                got += n
            }
            return Array(bytes.prefix(got))
        }

        func writesDirectly() throws -> Bool {
            try channel.eventLoop.submit {
                try channel.pipeline.syncOperations.handler(type: SubscriberChannelDrain.FrameWriter.self).directDescriptor != nil
            }.wait()
        }

        func close() throws {
            Glibc.close(client)
            try? channel.close().wait()
            try server.close().wait()
            try group.syncShutdownGracefully()
        }
    }

    /// Where `received` first differs from `expected` (a length short counts too); nil if they are the same.
    static func firstDifference(_ received: [UInt8], _ expected: [UInt8]) -> Int? {
        if let index = (0..<min(received.count, expected.count)).first(where: { received[$0] != expected[$0] }) { return index }
        return received.count == expected.count ? nil : min(received.count, expected.count)
    }

    static func message(_ seq: Int, bytes: Int = 64) -> OutboundMessage {
        OutboundMessage(
            type: "video.updated", jobId: "job_direct", seq: Int64(seq), occurredAt: nil,
            text: "{\"seq\":\(seq),\"pad\":\"\(String(repeating: "x", count: bytes))\"}")
    }

    @Test func aJobsMessagesGoStraightToTheSocketNotThroughNIO() throws {
        let metrics = BridgeMetrics()
        let connection = try Connection(outboxCapacity: 100, metrics: metrics, smallBuffers: false)
        defer { try? connection.close() }
        let subscriber = connection.outbox
        #expect(try connection.writesDirectly())
        let messages = (1...20).map { Self.message($0) }
        try connection.channel.eventLoop.submit {
            for message in messages { subscriber.enqueueJobMessage(message, direct: true) }
        }.wait()
        let expected = messages.flatMap { Array($0.wire.readableBytesView) }
        #expect(Self.firstDifference(connection.read(expected.count), expected) == nil)
        #expect(connection.headWrites.count.load(ordering: .relaxed) == 0)  // none went through NIO
        #expect(metrics.render().contains("progress_bridge_messages_sent_total 20"))
        #expect(metrics.render().contains("progress_bridge_socket_writes_unfinished_total 0"))
    }

    @Test func whatTheSocketCannotTakeNIOFinishesAndNothingOvertakesIt() throws {
        let metrics = BridgeMetrics()
        let connection = try Connection(outboxCapacity: 1_000, metrics: metrics, smallBuffers: true)
        defer { try? connection.close() }
        let subscriber = connection.outbox
        #expect(try connection.writesDirectly())
        // The client reads nothing yet: the socket's buffers (~16 KiB) fill, a message is taken in part or not at all,
        // NIO holds the rest, and a connection frame written meanwhile (a ping) waits its turn behind it in NIO; then
        // more than NIO's high watermark (64 KiB), so the outbox queues the last.
        let first = (1...20).map { Self.message($0, bytes: 2_000) }
        let ping = WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer(string: "between"))
        let second = (21...120).map { Self.message($0, bytes: 2_000) }
        let channel = connection.channel
        try channel.eventLoop.submit {
            for message in first { subscriber.enqueueJobMessage(message, direct: true) }
            channel.writeAndFlush(ping, promise: nil)
        }.wait()
        #expect(connection.headWrites.count.load(ordering: .relaxed) > 0)
        // Then, with the event loop held (NIO cannot write what it holds), the client makes room in the socket: the
        // next messages must still wait behind NIO's bytes, not take that room.
        let started = DispatchSemaphore(value: 0)
        let gate = DispatchSemaphore(value: 0)
        let held = channel.eventLoop.submit {
            started.signal()
            gate.wait()
            for message in second { subscriber.enqueueJobMessage(message, direct: true) }
        }
        started.wait()
        let early = connection.read(8_192)
        gate.signal()
        try held.wait()
        var expected = first.flatMap { Array($0.wire.readableBytesView) }
        expected += [0x89, 7] + Array("between".utf8)
        expected += second.flatMap { Array($0.wire.readableBytesView) }
        #expect(Self.firstDifference(early + connection.read(expected.count - early.count), expected) == nil)
        #expect(!metrics.render().contains("progress_bridge_socket_writes_unfinished_total 0"))
        // Once NIO has written everything, messages go straight to the socket again.
        try channel.eventLoop.submit {}.wait()
        let before = connection.headWrites.count.load(ordering: .relaxed)
        let last = Self.message(121)
        try channel.eventLoop.submit { subscriber.enqueueJobMessage(last, direct: true) }.wait()
        #expect(connection.read(last.wire.readableBytes) == Array(last.wire.readableBytesView))
        #expect(connection.headWrites.count.load(ordering: .relaxed) == before)
    }

    @Test func aFrameNIOHoldsUnflushedIsNotOvertaken() throws {
        let metrics = BridgeMetrics()
        let connection = try Connection(outboxCapacity: 100, metrics: metrics, smallBuffers: false)
        defer { try? connection.close() }
        let subscriber = connection.outbox
        let channel = connection.channel
        let first = Self.message(1)
        try channel.eventLoop.submit { subscriber.enqueueJobMessage(first, direct: true) }.wait()
        #expect(connection.read(first.wire.readableBytes) == Array(first.wire.readableBytesView))
        // A frame written from above and not flushed yet is NIO's to send first.
        let ping = WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer(string: "held"))
        let second = Self.message(2)
        try channel.eventLoop.submit {
            channel.write(ping, promise: nil)
            subscriber.enqueueJobMessage(second, direct: true)
        }.wait()
        let expected = [0x89, 4] + Array("held".utf8) + Array(second.wire.readableBytesView)
        #expect(Self.firstDifference(connection.read(expected.count), expected) == nil)
    }

    @Test func aClosedChannelsDescriptorIsNotWrittenWhenItsNumberIsTakenAgain() throws {
        // Inside NIO's close — the descriptor closed, the channel's held writes failing — a send must not reach whatever
        // socket takes the number next.
        var reusedRuns = 0
        for _ in 0..<5 {
            let metrics = BridgeMetrics()
            let connection = try Connection(outboxCapacity: 1_000, metrics: metrics, smallBuffers: true)
            defer { try? connection.close() }
            let subscriber = connection.outbox
            let channel = connection.channel
            let outcome = Mutex<(reused: Bool, leaked: Bool)?>(nil)
            try channel.eventLoop.submit {
                let writer = try channel.pipeline.syncOperations.handler(type: SubscriberChannelDrain.FrameWriter.self)
                let number = try #require(writer.directDescriptor)
                // More than the socket takes (NIO holds the rest), less than NIO's high watermark (still writable).
                for message in (1...20).map({ Self.message($0, bytes: 2_000) }) { subscriber.enqueueJobMessage(message, direct: true) }
                let held = channel.eventLoop.makePromise(of: Void.self)
                channel.write(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer(string: "p")), promise: held)
                held.futureResult.assumeIsolated().whenFailure { _ in
                    var pair: [CInt] = [-1, -1]
                    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { return }
                    _ = writer.send(Self.message(999))
                    var byte: UInt8 = 0
                    let leaked = recv(pair[0] == number ? pair[1] : pair[0], &byte, 1, CInt(MSG_DONTWAIT)) > 0
                    outcome.withLock { $0 = (pair.contains(number), leaked) }
                    Glibc.close(pair[0])
                    Glibc.close(pair[1])
                }
            }.wait()
            // The client resets the connection: NIO closes the channel on the error, failing the writes it holds.
            var linger = linger(l_onoff: 1, l_linger: 0)
            setsockopt(connection.client, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
            shutdown(connection.client, CInt(SHUT_RDWR))
            let deadline = ContinuousClock.now + .seconds(10)
            while outcome.withLock({ $0 }) == nil, ContinuousClock.now < deadline { try channel.eventLoop.submit {}.wait() }
            let seen = try #require(outcome.withLock { $0 })
            #expect(!seen.leaked)
            if seen.reused { reusedRuns += 1 }
        }
        #expect(reusedRuns > 0)  // the number was taken again at least once, or the test showed nothing
    }

    @Test func aCookieNamesOneSocketOnly() throws {
        var pair: [CInt] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { pair.forEach { _ = Glibc.close($0) } }
        let cookie = try #require(SubscriberSocket.cookie(of: pair[0]))
        #expect(SubscriberSocket.refers(pair[0], toSocketWithCookie: cookie))
        #expect(!SubscriberSocket.refers(pair[1], toSocketWithCookie: cookie))
        #expect(!SubscriberSocket.refers(-1, toSocketWithCookie: cookie))
        var pipe: [CInt] = [-1, -1]
        try #require(Glibc.pipe(&pipe) == 0)
        defer { pipe.forEach { _ = Glibc.close($0) } }
        #expect(SubscriberSocket.cookie(of: pipe[0]) == nil)
    }

    @Test func onlyADescriptorNamedByTheChannelsDescriptionIsTaken() {
        #expect(SubscriberSocket.descriptor(named: "SocketChannel { BaseSocket { fd=12 }, active = true }") == 12)
        #expect(SubscriberSocket.descriptor(named: "EmbeddedChannel") == nil)
        #expect(SubscriberSocket.descriptor(named: "SocketChannel { BaseSocket { fd= }, active = true }") == nil)
        #expect(SubscriberSocket.descriptor(named: "SocketChannel { BaseSocket { fd=99999999999 } }") == nil)
    }

    @Test func aChannelWithoutASocketHasNoneFound() {
        // An embedded channel has no socket: nothing is found, its messages go through NIO.
        let channel = EmbeddedChannel()
        let found = Mutex(false)
        SubscriberSocket.find(for: channel) { _ in found.withLock { $0 = true } }
        #expect(!found.withLock { $0 })
    }
}

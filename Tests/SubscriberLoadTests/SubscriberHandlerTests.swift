import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import SubscriberLoad

/// The load client's connection handler on an embedded channel: what it answers, what it records, when it hangs up.
@Suite("A load subscriber's connection")
struct SubscriberHandlerTests {
    /// A connected channel with the handler as its whole pipeline, as after the upgrade.
    final class Connection {
        let channel = EmbeddedChannel()
        let subscribers = NIOLoopSubscribers(recorder: LoopRecorder(jobCount: 1))
        var recorder: LoopRecorder { subscribers.recorder }
        let ready: EventLoopPromise<Void>

        init() throws {
            ready = channel.eventLoop.makePromise()
            let index = subscribers.register(job: 0, channel: channel)
            try channel.pipeline.syncOperations.addHandler(
                SubscriberHandler(subscribers: subscribers, index: index, ready: ready, maxMessageBytes: 1 << 20))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        func receive(_ bytes: [UInt8]) throws {
            try channel.writeInbound(channel.allocator.buffer(bytes: bytes))
        }

        /// Every frame the handler wrote, unmasked, as (opcode, payload); checks each is masked.
        func sent() throws -> [(UInt8, [UInt8])] {
            var frames: [(UInt8, [UInt8])] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
                let bytes = Array(buffer.readableBytesView)
                #expect(bytes.count >= 6 && bytes[1] & 0x80 != 0, "an unmasked client frame")
                let length = Int(bytes[1] & 0x7F)
                #expect(length < 126)
                let key = Array(bytes[2..<6])
                frames.append((bytes[0] & 0x0F, bytes[6...].enumerated().map { $0.element ^ key[$0.offset & 3] }))
            }
            return frames
        }
    }

    @Test("the snapshot makes it ready; live messages are recorded; a ping is answered with its payload")
    func snapshotLiveAndPing() throws {
        let connection = try Connection()
        try connection.receive(
            serverText(#"{"type":"connection.ack","seq":0}"#) + serverText(#"{"type":"job.snapshot","seq":5}"#)
                + serverFrame(0x9, [7, 8, 9]))
        // (Not `wait()`: on an embedded loop it would hang, not fail, if the promise were left open.)
        let succeeded = NIOLockedValueBox(false)
        connection.ready.futureResult.whenSuccess { succeeded.withLockedValue { $0 = true } }
        #expect(succeeded.withLockedValue { $0 })
        #expect(connection.recorder.connections[0].ready)
        let sent = try connection.sent()
        #expect(sent.count == 1 && sent[0].0 == 0xA && sent[0].1 == [7, 8, 9])
        connection.recorder.openWindow()
        try connection.receive(serverText(#"{"type":"video.updated","seq":6,"ts":"2026-11-24T10:00:00.000Z"}"#))
        let summary = connection.recorder.summary()
        #expect(summary.messages == 1 && summary.histogram.count == 1)
        #expect(summary.jobs[0].neverConflatedSeqs == [6])
        #expect(connection.channel.isActive)
    }

    @Test("a close frame from the bridge is echoed with its code, then the connection hangs up and records the code")
    func closeEchoed() throws {
        let connection = try Connection()
        try connection.receive(serverText(#"{"type":"job.snapshot","seq":1}"#))
        try connection.receive(serverFrame(0x8, [0x0F, 0xA1]))  // 4001
        let sent = try connection.sent()
        #expect(sent.count == 1 && sent[0].0 == 0x8 && sent[0].1 == [0x0F, 0xA1])
        #expect(!connection.channel.isActive)
        #expect(connection.recorder.summary().closes == [4001: 1])
    }

    @Test("a close code that may not be sent, or a 1-byte close payload, is answered with 1002; an empty one with 1000")
    func closeCodes() throws {
        for (payload, answer) in [([UInt8]([0x03, 0xED]), UInt16(1002)), ([0x03], 1002), ([], 1000), ([0x13, 0x88], 1002), ([0x0F, 0xA1, 0x41], 4001)] {
            let connection = try Connection()
            try connection.receive(serverText(#"{"type":"job.snapshot","seq":1}"#) + serverFrame(0x8, payload))
            let sent = try connection.sent()
            #expect(sent.count == 1 && sent[0].0 == 0x8 && sent[0].1 == [UInt8(answer >> 8), UInt8(answer & 0xFF)], "payload \(payload)")
            #expect(!connection.channel.isActive)
        }
    }

    @Test("after a close frame nothing more is sent, even for a bad frame in the same read")
    func nothingAfterClose() throws {
        let connection = try Connection()
        try connection.receive(
            serverText(#"{"type":"job.snapshot","seq":1}"#) + serverFrame(0x8, [0x03, 0xE9]) + serverFrame(0x9, [1])
                + [0xC1, 0x00])
        let sent = try connection.sent()
        #expect(sent.count == 1 && sent[0].0 == 0x8 && sent[0].1 == [0x03, 0xE9])
        #expect(connection.recorder.summary().closes == [1001: 1])
    }

    @Test("a frame a server may not send closes with 1002; one over the message limit (2 MiB of 1 MiB) with 1009; nothing is read after")
    func protocolErrors() throws {
        for (bytes, code) in [([UInt8]([0x81, 0x81, 1, 2, 3, 4, 0x41]), UInt16(1002)), ([0x81, 127, 0, 0, 0, 0, 0, 0x20, 0, 0], 1009)] {
            let connection = try Connection()
            try connection.receive(bytes + serverText(#"{"type":"job.snapshot","seq":1}"#))
            let sent = try connection.sent()
            #expect(sent.count == 1 && sent[0].0 == 0x8 && sent[0].1 == [UInt8(code >> 8), UInt8(code & 0xFF)])
            #expect(!connection.channel.isActive)
            #expect(!connection.recorder.connections[0].ready)
        }
        // Once ready, such a close is counted under its code.
        let connection = try Connection()
        try connection.receive(serverText(#"{"type":"job.snapshot","seq":1}"#) + [0x81, 0x81, 1, 2, 3, 4, 0x41])
        #expect(connection.recorder.summary().closes == [1002: 1])
    }
}

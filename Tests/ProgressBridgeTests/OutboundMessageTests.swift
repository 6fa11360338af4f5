import JSONSchema
import Kafka
import NIOCore
import NIOEmbedded
import NIOWebSocket
import ProgressAggregation
import ProgressContract
import Testing

@testable import ProgressBridge

/// Event messages are written straight to bytes on ingest's hot path; they must be exactly what the general
/// JSON-tree path gives (every replica must send byte-identical messages, whichever path a future change takes).
@Suite("Outbound messages written straight")
struct OutboundMessageTests {
    @Test func aVideoEventsMessageIsByteForByteTheJSONTreesSerialisation() throws {
        let store = JobStore(metrics: BridgeMetrics())
        var e = StoreEvents("job_bytes")
        _ = store.apply(e.running())
        _ = store.apply(e.completed("plain", at: 1))
        _ = store.apply(e.completed("esc\"aped\\", at: 2, message: "s3://out/\"quoted\"\n\t\u{1}é✓"))
        let failure = e.make(
            .videoFailed(
                videoId: "failed/1", error: ErrorInfo(code: "RENDER", message: "line 1\nline \"2\" \u{7f}\u{0}"), retryable: true, attempt: 3,
                processingMs: 9_007_199_254_740_991),
            type: .videoFailed, at: -5)
        _ = store.apply(failure)
        let videos = try #require(store.aggregate("job_bytes")?.videos.values)
        #expect(videos.count == 3)
        for video in videos {
            let direct = OutboundMessage.event(
                type: "video.completed", jobId: "job_bytes", seq: 42, occurredAt: 1_795_515_330_123, eventId: "ev-\"1\"", writeData: VideoView(video).writeJSON)
            let tree = OutboundMessage.make(
                type: "video.completed", jobId: "job_bytes", seq: 42, ts: 1_795_515_330_123, occurredAt: 1_795_515_330_123, data: video.json,
                extra: ["event_id": .string("ev-\"1\"")])
            #expect(direct.text == tree.text)
            #expect(try JSONParser().parse(direct.text)["data"] == video.json)
        }
    }

    @Test func anEventsTraceparentIsWrittenAsTheTreeWritesIt() throws {
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let direct = OutboundMessage.event(
            type: "job.progress", jobId: "job_t", seq: 7, occurredAt: 1_795_515_330_123, eventId: "e1", traceparent: trace,
            writeData: { $0.append(contentsOf: "{}".utf8) })
        let tree = OutboundMessage.make(
            type: "job.progress", jobId: "job_t", seq: 7, ts: 1_795_515_330_123, occurredAt: 1_795_515_330_123, data: .object([:]),
            extra: ["event_id": .string("e1"), "traceparent": .string(trace)])
        #expect(direct.text == tree.text)
    }

    @Test func onlyAWellFormedTraceparentIsCarried() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        #expect(TraceParent.parse(valid) == valid)
        for bad in [
            "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\"",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", String(repeating: "a", count: 10_000),
        ] {
            #expect(TraceParent.parse(bad) == nil, "\(bad.prefix(60))")
        }
        for _ in 0..<100 { #expect(TraceParent.parse(TraceParent.start()) != nil) }
    }

    @Test func numbersAreWrittenAsTheTreeWritesThem() {
        for number in [JSONNumber(Int64.min), JSONNumber(Int64.max), JSONNumber(Int64(0)), JSONNumber(Int64(-7)), JSONNumber(Double(50)), JSONNumber(Double(12.5)), JSONNumber(Double.nan)] {
            var bytes: [UInt8] = []
            JSONValue.writeNumber(number, into: &bytes)
            #expect(String(decoding: bytes, as: UTF8.self) == JSONValue.number(number).serialized())
        }
        #expect(JSONValue.number(JSONNumber(Int64.min)).serialized() == "-9223372036854775808")
    }
}

/// A message's frame is encoded once and written to every subscriber below NIO's frame encoder, so it must be
/// exactly what that encoder writes for the same text frame, at every length form of the header.
@Suite("Ready-made WebSocket frames")
struct ReadyMadeFrameTests {
    @Test(arguments: [0, 1, 125, 126, 127, 65_535, 65_536, 70_000])
    func aMessagesFrameIsWhatNIOsEncoderWrites(length: Int) throws {
        let text = String(repeating: "é", count: length / 2) + String(repeating: "x", count: length % 2)
        let message = OutboundMessage(type: "job.progress", jobId: "job_1", seq: 1, occurredAt: nil, text: text)
        #expect(message.text == text)
        #expect(message.byteCount == length)

        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder())
        try channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: text))).wait()
        var encoded = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { encoded.writeBuffer(&part) }
        #expect(message.wire == encoded)
        _ = try channel.finish()
    }
}

/// The drain writes a subscriber's messages on its channel, and holds its outbox only while it is in the pipeline:
/// the outbox's wake-up holds the drain, so a drain that kept the outbox after the channel closed would leak both.
@Suite("Subscriber channel drain")
struct SubscriberChannelDrainTests {
    @Test func itWritesQueuedMessagesAndLetsGoOfTheOutboxWhenTheChannelCloses() throws {
        weak var released: Outbox?
        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder())
        do {
            let metrics = BridgeMetrics()
            let outbox = Outbox(capacity: 8, metrics: metrics)
            released = outbox
            try SubscriberChannelDrain.attach(outbox, to: channel, metrics: metrics)
            let message = OutboundMessage(type: "job.progress", jobId: "job_1", seq: 1, occurredAt: nil, text: "{}")
            outbox.enqueue(message)
            channel.embeddedEventLoop.run()
            var written = ByteBuffer()
            while var part = try channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&part) }
            #expect(written == message.wire)
        }
        // Open, and not closed by anyone: the outbox is still the drain's.
        #expect(released != nil)
        _ = try channel.finish()
        channel.embeddedEventLoop.run()
        #expect(released == nil)
    }

    @Test func itHoldsMessagesWhileTheChannelIsNotWritableAndSendsThemWhenItIsAgain() throws {
        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder())
        let metrics = BridgeMetrics()
        let outbox = Outbox(capacity: 8, metrics: metrics)
        try SubscriberChannelDrain.attach(outbox, to: channel, metrics: metrics)
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        let messages = (1...2).map { OutboundMessage(type: "video.updated", jobId: "job_1", seq: Int64($0), occurredAt: nil, text: "{\"n\":\($0)}") }
        for message in messages { outbox.enqueue(message) }
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        #expect(outbox.queuedBytes == messages.map(\.byteCount).reduce(0, +))
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        var written = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&part) }
        var expected = messages[0].wire
        var second = messages[1].wire
        expected.writeBuffer(&second)
        #expect(written == expected)
        #expect(outbox.queuedBytes == 0)
        _ = try channel.finish()
    }
}

/// An event loop's queue of job messages: one post for all of a job's subscribers on the loop, each subscriber's
/// messages in order, a lone message written at once and several batched, the loop's other work between slices, and a
/// loop too far behind refusing posts by closing their subscribers.
@Suite("Event loop route")
struct LoopRouteTests {
    typealias Route = SubscriberChannelDrain.LoopDrains

    /// The `seq`s of the text frames in `bytes` (unmasked, as a server writes them).
    func seqs(of bytes: ByteBuffer) throws -> [Int64] {
        var rest = bytes
        var seqs: [Int64] = []
        while rest.readableBytes > 0 {
            let header = rest.readBytes(length: 2) ?? [0, 127]
            var length = Int(header[1] & 0x7F)
            if length == 126 { length = Int(rest.readInteger(as: UInt16.self) ?? 0) }
            #expect(header[1] & 0x7F < 127 && length <= rest.readableBytes)
            let text = rest.readString(length: min(length, rest.readableBytes)) ?? ""
            seqs.append(try #require(try JSONParser().parse(text)["seq"]?.int64Value))
        }
        return seqs
    }

    /// Counts the flushes that reach the socket.
    final class FlushCounter: ChannelOutboundHandler {
        typealias OutboundIn = NIOAny
        var flushes = 0
        func flush(context: ChannelHandlerContext) {
            flushes += 1
            context.flush()
        }
    }

    /// A subscriber on `loop`'s channel `channel`, subscribed to `job` (its snapshot written).
    func subscriber(_ job: String, _ store: JobStore, _ loop: EmbeddedEventLoop, _ metrics: BridgeMetrics) throws -> (EmbeddedChannel, Outbox, FlushCounter) {
        let counter = FlushCounter()
        let channel = EmbeddedChannel(handlers: [counter, WebSocketFrameEncoder()], loop: loop)
        let outbox = Outbox(capacity: 100, metrics: metrics, deliveredOn: loop)
        try SubscriberChannelDrain.attach(outbox, to: channel, metrics: metrics)
        store.subscribe(jobId: job, subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: nil, now: 0)
        loop.run()
        #expect(try written(channel) == [0])  // the snapshot, straight to the outbox
        return (channel, outbox, counter)
    }

    func written(_ channel: EmbeddedChannel) throws -> [Int64] {
        var bytes = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&part) }
        return try seqs(of: bytes)
    }

    @Test func aJobsMessageIsOnePostForTheLoopsSubscribersAndReachesEachInOrder() throws {
        let loop = EmbeddedEventLoop()
        let route = Route.queue(of: loop)
        let metrics = BridgeMetrics()
        let store = JobStore(metrics: metrics)
        let subscribers = try (0..<3).map { _ in try subscriber("job_route", store, loop, metrics) }
        #expect(route.pendingPosts == 0)
        var e = StoreEvents("job_route")
        for event in [e.running(), e.completed("v1", at: 1), e.completed("v2", at: 2)] { _ = store.apply(event) }
        #expect(route.pendingPosts == 3)  // one per event, not one per subscriber and event
        for (channel, _, _) in subscribers { #expect(try channel.readOutbound(as: ByteBuffer.self) == nil) }
        loop.run()
        #expect(route.pendingPosts == 0)
        for (channel, outbox, _) in subscribers {
            #expect(try written(channel) == [1, 2, 3])
            #expect(outbox.queuedBytes == 0)
            _ = try channel.finish()
        }
    }

    @Test func aLoneMessageIsWrittenAtOnceAndSeveralAreBatchedAndConflated() throws {
        let loop = EmbeddedEventLoop()
        let metrics = BridgeMetrics()
        let store = JobStore(metrics: metrics)
        let (channel, _, counter) = try subscriber("job_batch", store, loop, metrics)
        var e = StoreEvents("job_batch")
        _ = store.apply(e.running())
        let before = counter.flushes
        loop.run()
        #expect(try written(channel) == [1])
        #expect(counter.flushes == before + 1)
        // Three waiting at once: queued first (the older job.progress replaced by the newer), then one write each.
        let progress = { (n: Int) in e.make(.jobProgress(MonitorCounts(totalVideos: 9, completed: n, failed: 0)), type: .jobProgress, at: Int64(n)) }
        for event in [progress(1), progress(2), e.completed("v1", at: 3)] { _ = store.apply(event) }
        loop.run()
        #expect(try written(channel) == [3, 4])
        #expect(counter.flushes == before + 2)
        #expect(metrics.render().contains("progress_bridge_messages_conflated_total 1"))
        _ = try channel.finish()
    }

    @Test func aMessageTheChannelCannotTakeWaitsAndTheNextWaitBehindIt() throws {
        let loop = EmbeddedEventLoop()
        let metrics = BridgeMetrics()
        let store = JobStore(metrics: metrics)
        let (channel, outbox, _) = try subscriber("job_wait", store, loop, metrics)
        var e = StoreEvents("job_wait")
        _ = store.apply(e.running())
        loop.run()
        #expect(try written(channel) == [1])
        #expect(outbox.queuedBytes == 0)  // written at once, never queued
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        for i in 1...2 {
            _ = store.apply(e.completed("v\(i)", at: Int64(i)))
            loop.run()
        }
        #expect(try written(channel) == [])
        #expect(outbox.queuedBytes > 0)
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        _ = store.apply(e.completed("v3", at: 3))
        loop.run()
        #expect(try written(channel) == [2, 3, 4])
        #expect(outbox.queuedBytes == 0)
        _ = try channel.finish()
    }

    @Test func aLoneMessageWaitsBehindWhatIsQueuedBeforeIt() throws {
        let loop = EmbeddedEventLoop()
        let metrics = BridgeMetrics()
        let store = JobStore(metrics: metrics)
        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder(), loop: loop)
        let outbox = Outbox(capacity: 100, metrics: metrics, deliveredOn: loop)
        try SubscriberChannelDrain.attach(outbox, to: channel, metrics: metrics)
        store.subscribe(jobId: "job_behind", subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: nil, now: 0)
        var e = StoreEvents("job_behind")
        _ = store.apply(e.running())  // posted while the snapshot still waits in the outbox
        loop.run()
        #expect(try written(channel) == [0, 1])
        _ = try channel.finish()
    }

    @Test func aResumeWithTheJobsMessagesStillOnTheirWayLosesNoneOfThem() throws {
        let loop = EmbeddedEventLoop()
        let metrics = BridgeMetrics()
        let store = JobStore(metrics: metrics)
        let (channel, outbox, _) = try subscriber("job_resume", store, loop, metrics)
        var e = StoreEvents("job_resume")
        _ = store.apply(e.running())
        loop.run()
        #expect(try written(channel) == [1])
        // A job.progress and a video event posted to the loop, not yet applied there, when the client resumes after 1.
        _ = store.apply(e.make(.jobProgress(MonitorCounts(totalVideos: 9, completed: 1, failed: 0)), type: .jobProgress, at: 1))
        _ = store.apply(e.completed("v1", at: 2))
        store.resume(jobId: "job_resume", subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: 1, now: 0)
        loop.run()
        // What the client keeps by the rule (drop a job message whose seq is not above the largest seen): all of it.
        var largest: Int64 = 1
        var kept: [Int64] = []
        for seq in try written(channel) where seq > largest {
            kept.append(seq)
            largest = seq
        }
        #expect(kept == [2, 3])
        _ = try channel.finish()
    }

    @Test func theLoopsOtherWorkRunsBetweenSlicesOfPosts() {
        let loop = EmbeddedEventLoop()
        let route = Route.queue(of: loop)
        let metrics = BridgeMetrics()
        let outbox = Outbox(capacity: .max, metrics: metrics, deliveredOn: loop)
        let message = OutboundMessage(type: "video.updated", jobId: "job_1", seq: 1, occurredAt: nil, text: "{}")
        let posts = Route.postsPerRun * 2 + 1
        for _ in 0..<posts { route.post(message, to: [outbox]) }
        var seen: [Int] = []
        loop.execute { seen.append(route.pendingPosts) }  // behind the first slice, ahead of the next
        loop.run()
        #expect(seen == [posts - Route.postsPerRun])
        #expect(route.pendingPosts == 0)
        #expect(outbox.queuedBytes == posts * message.byteCount)
        // Posts for many subscribers: as many as `deliveriesPerRun` messages at a time, one post at the least.
        let crowd = [Outbox](repeating: Outbox(capacity: .max, metrics: metrics, deliveredOn: loop), count: Route.deliveriesPerRun / 2 + 1)
        for _ in 0..<3 { route.post(message, to: crowd) }
        seen = []
        loop.execute { seen.append(route.pendingPosts) }
        loop.run()
        #expect(seen == [2])
        #expect(route.pendingPosts == 0)
    }

    @Test func aLoopWithTooManyPostsWaitingClosesTheSubscriberOfTheNext() {
        let loop = EmbeddedEventLoop()
        let route = Route.queue(of: loop)
        let metrics = BridgeMetrics()
        let outbox = Outbox(capacity: .max, metrics: metrics, deliveredOn: loop)
        let message = OutboundMessage(type: "video.updated", jobId: "job_1", seq: 1, occurredAt: nil, text: "{}")
        for _ in 0..<Route.maxPosts { route.post(message, to: [outbox]) }
        #expect(outbox.closure == nil)
        route.post(message, to: [outbox])
        #expect(outbox.closure == .overflowed)
        #expect(metrics.render().contains("progress_bridge_send_queue_overflows_total 1"))
        #expect(metrics.render().contains("progress_bridge_messages_dropped_total 1"))
        loop.run()
        #expect(route.pendingPosts == 0)
        #expect(outbox.take() == nil)
    }

    @Test func aLoopWithTooManyDeliveriesWaitingClosesTheSubscribersOfTheNextPost() {
        let loop = EmbeddedEventLoop()
        let route = Route.queue(of: loop)
        let metrics = BridgeMetrics()
        let message = OutboundMessage(type: "video.updated", jobId: "job_1", seq: 1, occurredAt: nil, text: "{}")
        let crowd = Outbox(capacity: .max, metrics: metrics, deliveredOn: loop)
        route.post(message, to: [Outbox](repeating: crowd, count: Route.maxDeliveries))  // into an empty queue: taken
        let next = (0..<2).map { _ in Outbox(capacity: 10, metrics: metrics, deliveredOn: loop) }
        route.post(message, to: next)
        #expect(crowd.closure == nil)
        #expect(next.allSatisfy { $0.closure == .overflowed })
        loop.run()
        #expect(crowd.queuedBytes == Route.maxDeliveries * message.byteCount)
    }

    @Test func aLoopWithTooManyBytesWaitingClosesTheSubscribersOfTheNextPost() throws {
        let loop = EmbeddedEventLoop()
        let route = Route.queue(of: loop)
        let metrics = BridgeMetrics()
        let big = OutboundMessage(type: "video.updated", jobId: "job_1", seq: 1, occurredAt: nil, payload: [UInt8](repeating: 0x20, count: 1 << 20))
        let fitting = Route.maxBytes / big.byteCount
        #expect(fitting == 64)
        let outboxes = (0..<fitting + 1).map { _ in Outbox(capacity: 10, byteCapacity: 2 << 20, metrics: metrics, deliveredOn: loop) }
        for outbox in outboxes { route.post(big, to: [outbox]) }
        #expect(outboxes.prefix(fitting).allSatisfy { $0.closure == nil })
        #expect(outboxes[fitting].closure == .overflowed)
        loop.run()
        #expect(outboxes.prefix(fitting).allSatisfy { $0.queuedBytes == big.byteCount })
        // Caught up, the loop takes as many again: what it applied no longer counts.
        let later = (0..<fitting).map { _ in Outbox(capacity: 10, metrics: metrics, deliveredOn: loop) }
        for outbox in later { route.post(big, to: [outbox]) }
        loop.run()
        #expect(later.allSatisfy { $0.closure == nil && $0.queuedBytes == big.byteCount })
    }

    @Test func aResumesReplayGoesToTheSubscribersOwnQueueNotTheLoops() throws {
        let loop = EmbeddedEventLoop()
        let route = Route.queue(of: loop)
        let metrics = BridgeMetrics()
        let store = JobStore(metrics: metrics)
        var e = StoreEvents("job_replay")
        _ = store.apply(e.running())
        for i in 0..<50 { _ = store.apply(e.completed("v\(i)", at: Int64(i + 1))) }
        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder(), loop: loop)
        let outbox = Outbox(capacity: 100, metrics: metrics, deliveredOn: loop)
        try SubscriberChannelDrain.attach(outbox, to: channel, metrics: metrics)
        store.subscribe(jobId: "job_replay", subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: 1, now: 0)
        #expect(route.pendingPosts == 0)
        loop.run()
        #expect(try written(channel) == [0] + Array(2...51))  // resume.ok (seq 0), then the replay
        _ = try channel.finish()
    }
}

/// Messages of jobs nobody watches are written only when a resume replays them; they must be the very bytes a live
/// subscriber got, each video as it was at its event (not as it is when replayed).
@Suite("History written on replay")
struct UnwrittenHistoryTests {
    /// The same events applied to two stores: one job watched from the start, one not; returns what the watcher got
    /// live and what a resume from `lastSeq` replays from the unwatched job's history.
    func liveAndReplayed(_ events: [ProgressEvent], lastSeq: Int64, traceparent: String?) async -> (live: [String], replayed: [String]) {
        let watched = JobStore(metrics: BridgeMetrics())
        let unwatched = JobStore(metrics: BridgeMetrics())
        let jobId = events[0].jobId
        let live = Outbox(capacity: 1000, metrics: BridgeMetrics())
        watched.subscribe(jobId: jobId, subscriber: ObjectIdentifier(live), outbox: live, lastSeq: nil, now: 0)
        for (offset, event) in events.enumerated() {
            let origin = EventOrigin(partition: TopicPartition(topic: "t", partition: 0), offset: Int64(offset))
            #expect(watched.apply(event, at: origin, traceparent: traceparent) == .applied)
            #expect(unwatched.apply(event, at: origin, traceparent: traceparent) == .applied)
        }
        let resumed = Outbox(capacity: 1000, metrics: BridgeMetrics())
        unwatched.subscribe(jobId: jobId, subscriber: ObjectIdentifier(resumed), outbox: resumed, lastSeq: lastSeq, now: 0)
        let liveEvents = await drain(live).filter { $0.seq > lastSeq }.map(\.text)
        let replayed = await drain(resumed).filter { $0.type != "resume.ok" }.map(\.text)
        return (liveEvents, replayed)
    }

    @Test func aReplayIsByteForByteWhatTheLiveSubscriberGot() async throws {
        var e = StoreEvents("job_unwritten")
        let events = [
            e.running(),
            e.make(.videoCreated(videoId: "v1", rowIndex: 2, title: "Clip \"one\""), type: .videoCreated, at: 1),
            e.make(.videoUpdated(videoId: "v1", state: .processing, progressPercent: 40, stage: "render", attempt: 1), type: .videoUpdated, at: 2),
            e.completed("v1", at: 3, message: "s3://out/v1.mp4"),
            e.make(.videoFailed(videoId: "v2", error: ErrorInfo(code: "E", message: "bad\nframe"), retryable: true, attempt: 2, processingMs: 7), type: .videoFailed, at: 4),
            e.make(.jobProgress(MonitorCounts(totalVideos: 2, completed: 1, failed: 1)), type: .jobProgress, at: 5),
            e.make(.jobCompleted(summary: nil), type: .jobCompleted, at: 6),
        ]
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let (live, replayed) = await liveAndReplayed(events, lastSeq: 1, traceparent: trace)
        #expect(live.count == events.count - 1)
        #expect(replayed == live)
        // Each video message shows the video at its event: v1 processing at 40 %, then completed.
        let v1 = replayed.compactMap { try? JSONParser().parse($0) }.filter { $0["data"]?["id"]?.stringValue == "v1" }
        #expect(v1.map { $0["data"]?["state"]?.stringValue } == ["pending", "processing", "completed"])
        #expect(replayed.allSatisfy { $0.contains(trace) })
    }

    @Test func aSecondReplayGetsTheSameMessagesAgain() async throws {
        let store = JobStore(metrics: BridgeMetrics())
        var e = StoreEvents("job_twice")
        _ = store.apply(e.running())
        for i in 0..<5 { _ = store.apply(e.completed("v\(i)", at: Int64(i + 1))) }
        var replays: [[String]] = []
        for _ in 0..<2 {
            let outbox = Outbox(capacity: 100, metrics: BridgeMetrics())
            store.subscribe(jobId: "job_twice", subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: 2, now: 0)
            replays.append(await drain(outbox).filter { $0.type != "resume.ok" }.map(\.text))
            store.unsubscribe(jobId: "job_twice", subscriber: ObjectIdentifier(outbox))
        }
        #expect(replays[0].count == 4)
        #expect(replays[0] == replays[1])
    }
}

/// The resume history's own bounds, drafts and written messages alike.
@Suite("Job history bounds")
struct JobHistoryBoundTests {
    static func draft(seq: Int64, title: String) -> JobHistory.Entry {
        var aggregate = JobAggregate(jobId: "job_h", firstEventAt: 0)
        let event = ProgressEvent(eventId: "e\(seq)", type: .videoCreated, jobId: "job_h", occurredAt: seq, seq: seq, payload: .videoCreated(videoId: "v", rowIndex: nil, title: title))
        _ = aggregate.apply(event)
        return .unwritten(
            EventMessageDraft(type: .videoCreated, jobId: "job_h", seq: seq, occurredAt: seq, eventId: "e\(seq)", traceparent: nil, payload: .video(aggregate.view(ofVideo: "v")!)))
    }

    @Test func messagesOfAnEarlierIncarnationStayUnreplayableWhenOlderOnesAreDropped() {
        var history = JobHistory()
        for seq in Int64(1)...5 { history.append(Self.draft(seq: seq, title: "t"), limit: 10, byteLimit: 1 << 20) }
        history.forget(through: 5)  // the job started afresh after seq 5
        for seq in Int64(6)...14 { history.append(Self.draft(seq: seq, title: "t"), limit: 10, byteLimit: 1 << 20) }
        #expect(history.from >= 5, "dropping seq \(history.from) must not open the old incarnation's messages to a resume")
    }

    @Test func writingDraftsForAReplayKeepsTheHistoryWithinItsBytes() {
        // Control characters are written as \u00XX: six bytes for each byte the draft counted.
        let controls = String(repeating: "\u{1}", count: 2_000)
        var history = JobHistory()
        let byteLimit = 16 * 1024
        for seq in Int64(1)...30 { history.append(Self.draft(seq: seq, title: controls), limit: 1000, byteLimit: byteLimit) }
        #expect(history.bytes <= byteLimit)
        let replayed = history.messages(after: history.from, limit: 1000, byteLimit: byteLimit)
        #expect(!replayed.isEmpty)
        #expect(replayed.allSatisfy { $0.byteCount > 12_000 })
        #expect(history.bytes <= byteLimit || history.bytes == replayed.last!.byteCount, "\(history.bytes) bytes held")
    }
}

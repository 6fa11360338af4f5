import NIOCore
import NIOPosix

/// What carries a load run's connections: threads, each with its connections and its ``LoopRecorder``.
protocol SubscriberEngine: Sendable {
    /// One try to open connection `index` to `jobId`; returns once its snapshot came, throws otherwise.
    func subscribe(index: Int, job: Int, jobId: String, connectionId: String) async throws(ConnectFailure)
    /// Runs `body` on every thread with its recorder; returns the results in the threads' order.
    func onEveryRecorder<T: Sendable>(_ body: @escaping @Sendable (LoopRecorder) -> T) async -> [T]
    /// Closes every connection with a close frame (1000) and waits for the bridge's answer, at most 2 s; from now on
    /// closes are the run's own.
    func closeAll() async
    /// Stops the threads.
    func shutdown() async
}

/// How long `closeAll` waits for the bridge's close frames before it hangs up.
let closeAllWait = Duration.seconds(2)

/// One event loop's subscribers in the NIO engine: its recorder and the channels still open (to close them at the end).
final class NIOLoopSubscribers {
    let recorder: LoopRecorder
    private var channels: [Int: any Channel] = [:]

    init(recorder: LoopRecorder) {
        self.recorder = recorder
    }

    /// Adds a connection that just upgraded; returns its index.
    func register(job: Int, channel: any Channel) -> Int {
        let index = recorder.register(job: job)
        channels[index] = channel
        return index
    }

    /// Notes that a connection's channel closed; `code` is the close frame's code, `nil` if none came.
    func closed(connection index: Int, code: UInt16?) {
        channels[index] = nil
        recorder.closed(connection: index, code: code)
    }

    /// Starts closing every open connection with a close frame (1000); returns their close futures.
    func closeAll() -> [EventLoopFuture<Void>] {
        recorder.beginClosing()
        return channels.values.map { channel in
            channel.writeAndFlush(channel.allocator.buffer(bytes: ClientFrame.close(code: 1000)), promise: nil)
            return channel.closeFuture
        }
    }

    /// Closes whatever is still open, without waiting for the bridge's close frame.
    func forceCloseAll() {
        for channel in channels.values { channel.close(promise: nil) }
    }
}

/// The engine on SwiftNIO: one event loop per thread, NIO's HTTP client upgrade, then ``SubscriberHandler`` as each
/// connection's whole pipeline. Portable (macOS too); on Linux ``SocketSubscriberEngine`` costs less per message.
struct NIOSubscriberEngine: SubscriberEngine {
    let group: MultiThreadedEventLoopGroup
    let loops: [NIOLoopBound<NIOLoopSubscribers>]
    let connector: SubscriberConnector

    static func start(configuration: LoadConfiguration, target: SubscriberTarget, address: SocketAddress) async throws -> NIOSubscriberEngine {
        let connector = SubscriberConnector(
            target: target, address: address, token: configuration.token, handshakeTimeout: TimeAmount(configuration.handshakeTimeout),
            maxMessageBytes: configuration.maxMessageBytes)
        let jobCount = configuration.jobIds.count
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
        var loops: [NIOLoopBound<NIOLoopSubscribers>] = []
        do {
            for loop in group.makeIterator() {
                loops.append(try await loop.submit { NIOLoopBound(NIOLoopSubscribers(recorder: LoopRecorder(jobCount: jobCount)), eventLoop: loop) }.get())
            }
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        return NIOSubscriberEngine(group: group, loops: loops, connector: connector)
    }

    func subscribe(index: Int, job: Int, jobId: String, connectionId: String) async throws(ConnectFailure) {
        try await connector.subscribe(job: job, jobId: jobId, connectionId: connectionId, on: loops[index % loops.count])
    }

    func onEveryRecorder<T: Sendable>(_ body: @escaping @Sendable (LoopRecorder) -> T) async -> [T] {
        var results: [T] = []
        for loop in loops {
            // The group outlives the run, so `submit` cannot fail here.
            if let result = try? await loop.eventLoop.submit({ body(loop.value.recorder) }).get() { results.append(result) }
        }
        return results
    }

    func closeAll() async {
        var closed: [EventLoopFuture<Void>] = []
        for loop in loops {
            let eventLoop = loop.eventLoop
            let all = eventLoop.flatSubmit {
                let futures = loop.value.closeAll()
                let hangUp = eventLoop.scheduleTask(in: TimeAmount(closeAllWait)) { loop.value.forceCloseAll() }
                let all = EventLoopFuture.andAllComplete(futures, on: eventLoop)
                all.whenComplete { _ in hangUp.cancel() }
                return all
            }
            closed.append(all)
        }
        for future in closed { try? await future.get() }
    }

    func shutdown() async {
        try? await group.shutdownGracefully()
    }
}

#if canImport(CLinuxEpoll)
import CLinuxEpoll
import Glibc
import NIOCore
import Synchronization

/// The engine on raw sockets (Linux): per thread one epoll set, non-blocking sockets, the WebSocket handshake done
/// here (``UpgradeHandshake``), and each connection's bytes read straight into one buffer per thread and handed to
/// its ``SubscriberStream``. Per message that is one `recv` and the stream's work — no channel, pipeline, promise or
/// reference-counted buffer per read, which with 10,000 connections (each message on a cold connection) is most of
/// what the NIO engine spends above the kernel.
struct SocketSubscriberEngine: SubscriberEngine {
    let pollers: [SocketPoller]
    let target: SubscriberTarget
    let token: String?

    /// Starts the threads; `readBufferBytes`: what one `recv` takes at most (smaller only in tests).
    static func start(
        configuration: LoadConfiguration, target: SubscriberTarget, address: SocketAddress, readBufferBytes: Int = 1 << 16
    ) throws -> SocketSubscriberEngine {
        let settings = SocketPoller.Settings(
            address: address, handshakeTimeout: configuration.handshakeTimeout, maxMessageBytes: configuration.maxMessageBytes,
            jobCount: configuration.jobIds.count, readInterval: configuration.readInterval, readBufferBytes: readBufferBytes)
        var pollers: [SocketPoller] = []
        do {
            for _ in 0..<configuration.eventLoopThreads { pollers.append(try SocketPoller.start(settings)) }
        } catch {
            for poller in pollers { poller.stopWithoutWaiting() }
            throw error
        }
        return SocketSubscriberEngine(pollers: pollers, target: target, token: configuration.token)
    }

    func subscribe(index: Int, job: Int, jobId: String, connectionId: String) async throws(ConnectFailure) {
        let handshake = UpgradeHandshake()
        let request = handshake.request(host: target.hostHeader, requestURI: target.requestURI(jobId: jobId, connectionId: connectionId, token: token))
        let poller = pollers[index % pollers.count]
        let result = await withCheckedContinuation { (ready: CheckedContinuation<Result<Void, ConnectFailure>, Never>) in
            poller.submit { $0.open(job: job, handshake: handshake, request: request, ready: ready) }
        }
        try result.get()
    }

    func onEveryRecorder<T: Sendable>(_ body: @escaping @Sendable (LoopRecorder) -> T) async -> [T] {
        await onEveryThread { body($0.recorder) }
    }

    /// Each thread's rounds so far (its returns from `epoll_wait`).
    func rounds() async -> [Int] {
        await onEveryThread { $0.rounds }
    }

    /// Runs `body` on each thread in turn; its results, in the threads' order.
    private func onEveryThread<T: Sendable>(_ body: @escaping @Sendable (SocketPollerThread) -> T) async -> [T] {
        var results: [T] = []
        for poller in pollers {
            results.append(await withCheckedContinuation { answer in poller.submit { answer.resume(returning: body($0)) } })
        }
        return results
    }

    func closeAll() async {
        await withTaskGroup(of: Void.self) { group in
            for poller in pollers {
                group.addTask { await withCheckedContinuation { done in poller.submit { $0.closeAll(then: done) } } }
            }
        }
    }

    func shutdown() async {
        for poller in pollers {
            await withCheckedContinuation { done in poller.submit { $0.stop(then: done) } }
        }
    }
}

/// One thread of the socket engine, as the rest of the process sees it: work is handed to it with ``submit(_:)``
/// (a queue and an `eventfd` that wakes its `epoll_wait`).
final class SocketPoller: Sendable {
    /// What every thread of a run needs.
    struct Settings: Sendable {
        let address: SocketAddress
        let handshakeTimeout: Duration
        let maxMessageBytes: Int
        let jobCount: Int
        let readInterval: Duration
        let readBufferBytes: Int
    }

    fileprivate let epoll: Int32
    fileprivate let wake: Int32
    /// Work for the thread, and whether it has stopped taking any.
    private let commands = Mutex<(queue: [@Sendable (SocketPollerThread) -> Void], stopped: Bool)>(([], false))

    private init(epoll: Int32, wake: Int32) {
        self.epoll = epoll
        self.wake = wake
    }

    deinit {
        Glibc.close(epoll)
        Glibc.close(wake)
    }

    /// Starts the thread.
    static func start(_ settings: Settings) throws -> SocketPoller {
        let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw LoadError.cannotStart("epoll_create1: errno \(errno)") }
        let wake = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        guard wake >= 0 else {
            let error = errno
            Glibc.close(epoll)
            throw LoadError.cannotStart("eventfd: errno \(error)")
        }
        let poller = SocketPoller(epoll: epoll, wake: wake)  // closes both when it goes
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wake
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &event) == 0 else { throw LoadError.cannotStart("epoll_ctl: errno \(errno)") }
        let thread = Unmanaged.passRetained(SocketPollerThread(poller: poller, settings: settings)).toOpaque()
        var id = pthread_t()
        let started = pthread_create(
            &id, nil,
            { argument in
                guard let argument else { return nil }
                Unmanaged<SocketPollerThread>.fromOpaque(argument).takeRetainedValue().run()
                return nil
            }, thread)
        guard started == 0 else {
            Unmanaged<SocketPollerThread>.fromOpaque(thread).release()
            throw LoadError.cannotStart("pthread_create: \(started)")
        }
        pthread_detach(id)
        return poller
    }

    /// Runs `command` on the thread, soon. Not after ``SocketSubscriberEngine/shutdown()`` (nothing would run it).
    func submit(_ command: @escaping @Sendable (SocketPollerThread) -> Void) {
        commands.withLock {
            precondition(!$0.stopped, "work submitted to a stopped socket engine thread")
            $0.queue.append(command)
        }
        var one: UInt64 = 1
        _ = Glibc.write(wake, &one, 8)
    }

    /// Stops the thread without waiting for it (start-up failed elsewhere).
    func stopWithoutWaiting() {
        submit { $0.running = false }
    }

    /// The work submitted since the last call; `last`: the thread is ending, and takes no more after this.
    fileprivate func takeCommands(last: Bool = false) -> [@Sendable (SocketPollerThread) -> Void] {
        var count: UInt64 = 0
        _ = Glibc.read(wake, &count, 8)
        return commands.withLock { commands in
            defer { commands.queue = [] }
            if last { commands.stopped = true }
            return commands.queue
        }
    }
}

/// One connection of the socket engine, from its TCP connect on.
final class SocketSubscriber {
    enum Phase {
        /// The TCP connect is under way.
        case connecting
        /// The upgrade request went (or is going) out; the response's head is being read.
        case upgrading
        /// Upgraded: `stream` reads the bridge's frames.
        case open
    }

    let descriptor: Int32
    let job: Int
    let handshake: UpgradeHandshake
    var phase = Phase.connecting
    /// The response read so far, while upgrading.
    var responseHead: [UInt8] = []
    var stream: SubscriberStream?
    /// Bytes to write: the request, then pongs and close frames the socket did not take at once.
    var output: [UInt8]
    /// Close once `output` is written.
    var hangUpWhenWritten = false
    /// In its thread's `unfinished` list: its last read stopped at the round's limit with more to read.
    var isUnfinished = false
    /// The epoll events watched, edge-triggered: a socket is reported when bytes come, not again at every
    /// `epoll_wait` until it has been read (level-triggered, each message cost a second poll of its socket: ~13 % of
    /// the client's samples with 10,000 subscribers).
    var interest: UInt32
    /// Resumed once: with success at the first snapshot, with the failure if the try ends before.
    var ready: CheckedContinuation<Result<Void, ConnectFailure>, Never>?
    /// When the try fails if the snapshot has not come.
    let deadline: ContinuousClock.Instant

    init(
        descriptor: Int32, job: Int, handshake: UpgradeHandshake, request: [UInt8], interest: UInt32,
        ready: CheckedContinuation<Result<Void, ConnectFailure>, Never>, deadline: ContinuousClock.Instant
    ) {
        self.descriptor = descriptor
        self.job = job
        self.handshake = handshake
        self.output = request
        self.interest = interest
        self.ready = ready
        self.deadline = deadline
    }
}

/// The socket engine's thread itself: its epoll loop, its connections and its recorder. Only that thread touches it.
final class SocketPollerThread {
    let recorder: LoopRecorder
    private let poller: SocketPoller
    private let settings: SocketPoller.Settings
    fileprivate var running = true
    /// Connections by descriptor.
    private var connections: [SocketSubscriber?] = []
    private var openCount = 0
    /// Descriptors of connections waiting for their snapshot.
    private var handshaking = Set<Int32>()
    private var lastDeadlineCheck = ContinuousClock.now
    /// Connections whose last read stopped at `maxReadsPerEvent` with more to read (see `readAvailable`).
    private var unfinished: [SocketSubscriber] = []
    /// The thread's rounds so far: its returns from `epoll_wait`.
    private(set) var rounds = 0
    /// The run's `closeAll`, waiting for the connections to close, and when it stops waiting.
    private var closing: (done: CheckedContinuation<Void, Never>, deadline: ContinuousClock.Instant)?
    /// What the bridge sends is read into this, one connection at a time.
    private let buffer: UnsafeMutableRawBufferPointer
    /// The most a connection may have waiting to be written (pongs to a bridge that does not read) before it is
    /// dropped.
    private static let maxOutputBytes = 1 << 20
    /// Full buffers (64 KiB but in tests) read from one connection in a round; the rest waits for the next round (see
    /// `readAvailable`).
    private static let maxReadsPerEvent = 4

    fileprivate init(poller: SocketPoller, settings: SocketPoller.Settings) {
        self.poller = poller
        self.settings = settings
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(settings.readBufferBytes, 1), alignment: 16)
        recorder = LoopRecorder(jobCount: settings.jobCount)
    }

    deinit {
        buffer.deallocate()
    }

    /// Sleeps the thread for `duration` (at most a second); a signal may end it early, which costs one early round.
    private static func sleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        _ = nanosleep(&request, nil)
    }

    fileprivate func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 512)
        while running {
            // Woken by I/O or a command; while handshakes or the final close wait, also to check their deadlines; at once
            // when a connection was left with bytes to read.
            let timeout: Int32 = !unfinished.isEmpty ? 0 : handshaking.isEmpty && closing == nil ? -1 : 50
            let count = epoll_wait(poller.epoll, &events, Int32(events.count), timeout)
            rounds += 1
            // Taken now: whoever this round's reads leave unfinished waits for the next round.
            let carried = unfinished
            unfinished = []
            for connection in carried { connection.isUnfinished = false }
            let wokeAt: ContinuousClock.Instant? = settings.readInterval > .zero ? .now : nil
            var commanded = false
            for index in 0..<Int(max(count, 0)) {
                let descriptor = events[index].data.fd
                if descriptor == poller.wake {
                    commanded = true
                } else if let connection = connection(descriptor) {
                    handle(connection, events: events[index].events)
                }
            }
            continueReading(carried)
            // After the batch: a command may close and open descriptors, which the batch's events must not reach.
            if commanded {
                for command in poller.takeCommands() { command(self) }
            }
            checkDeadlines()
            // One round per read interval: what arrives meanwhile waits for the next (see `LoadConfiguration.readInterval`).
            // Not after a full batch (more is ready now), nor while handshakes or the final close have deadlines to keep.
            if running, let wokeAt, count < events.count, handshaking.isEmpty, closing == nil {
                let wait = wokeAt + settings.readInterval - .now
                if wait > .zero { Self.sleep(wait) }
            }
        }
        for connection in connections.compactMap({ $0 }) { close(connection, failure: .other("stopped")) }
        // Whatever came with or after the stop still gets its answer (a try fails at once: `running` is false).
        for command in poller.takeCommands(last: true) { command(self) }
    }

    // MARK: Commands

    /// Starts one try: a non-blocking connect, then the upgrade request.
    func open(job: Int, handshake: UpgradeHandshake, request: [UInt8], ready: CheckedContinuation<Result<Void, ConnectFailure>, Never>) {
        guard running else { return ready.resume(returning: .failure(.other("stopped"))) }
        let address = settings.address
        let descriptor = socket(Int32(address.protocol.rawValue), Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return ready.resume(returning: .failure(.connect(ConnectFailure.brief(errno: errno)))) }
        var one: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let connected = address.withSockAddr { connect(descriptor, $0, socklen_t($1)) }
        let connectError = errno
        guard connected == 0 || connectError == EINPROGRESS else {
            let failure = ConnectFailure.connect(ConnectFailure.brief(errno: connectError))
            Glibc.close(descriptor)
            return ready.resume(returning: .failure(failure))
        }
        let connection = SocketSubscriber(
            descriptor: descriptor, job: job, handshake: handshake, request: request, interest: EPOLLOUT.rawValue | EPOLLET.rawValue, ready: ready,
            deadline: .now + settings.handshakeTimeout)
        var event = epoll_event()
        event.events = connection.interest
        event.data.fd = descriptor
        guard epoll_ctl(poller.epoll, EPOLL_CTL_ADD, descriptor, &event) == 0 else {
            let error = errno
            Glibc.close(descriptor)
            return ready.resume(returning: .failure(.other("epoll_ctl: errno \(error)")))
        }
        let slot = Int(descriptor)
        if connections.count <= slot { connections += Array(repeating: nil, count: slot + 1 - connections.count) }
        connections[slot] = connection
        openCount += 1
        handshaking.insert(descriptor)
    }

    /// Closes every connection with a close frame (1000); `done` is resumed once all have closed, or after
    /// ``closeAllWait``, when those left are hung up on.
    func closeAll(then done: CheckedContinuation<Void, Never>) {
        recorder.beginClosing()
        closing?.done.resume()  // (a second call: the first one's wait ends now)
        closing = (done, .now + closeAllWait)
        for connection in connections.compactMap({ $0 }) {
            guard connection.phase == .open, let stream = connection.stream else {
                close(connection, failure: .other("stopped"))
                continue
            }
            // One that already sent or answered a close frame closes by itself.
            guard !stream.closing else { continue }
            connection.output += ClientFrame.close(code: 1000)
            write(connection)
        }
        finishClosingIfDone()
    }

    /// Ends the thread.
    func stop(then done: CheckedContinuation<Void, Never>) {
        running = false
        done.resume()
    }

    // MARK: I/O

    private func connection(_ descriptor: Int32) -> SocketSubscriber? {
        let slot = Int(descriptor)
        return slot >= 0 && slot < connections.count ? connections[slot] : nil
    }

    private func handle(_ connection: SocketSubscriber, events: UInt32) {
        if connection.phase == .connecting {
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(connection.descriptor, SOL_SOCKET, SO_ERROR, &error, &length)
            guard error == 0 else { return close(connection, failure: .connect(ConnectFailure.brief(errno: error))) }
            connection.phase = .upgrading
            write(connection)  // the request
            return
        }
        if events & EPOLLOUT.rawValue != 0 {
            guard write(connection) else { return }
        }
        if events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            readAvailable(connection)
        }
    }

    /// Reads what the socket has, up to `maxReadsPerEvent` full buffers; stops at a short read (the socket had no more;
    /// edge-triggered epoll reports the next bytes that come). A connection that still has more is read again in the
    /// next round (`unfinished`), after the other connections and the thread's own work had their turn: a server that
    /// sends without pause must not hold the thread (its deadlines, the run's commands, the other connections).
    /// `recv`, not `read`: a socket's own path, not the file layer's.
    private func readAvailable(_ connection: SocketSubscriber) {
        var reads = 0
        while reads < Self.maxReadsPerEvent {
            let count = recv(connection.descriptor, buffer.baseAddress, buffer.count, 0)
            if count > 0 {
                reads += 1
                guard received(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), on: connection), count == buffer.count else { return }
                if reads == Self.maxReadsPerEvent, !connection.isUnfinished {
                    connection.isUnfinished = true
                    unfinished.append(connection)
                }
            } else if count == 0 {
                return ended(connection)
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                return
            } else {
                return ended(connection)
            }
        }
    }

    /// Reads on from the connections the last round left with bytes to read (epoll reports none of them again until
    /// more bytes come) — but not one that this round's events read up to the limit again (it waits for the next), nor
    /// one that closed.
    private func continueReading(_ carried: [SocketSubscriber]) {
        for connection in carried where !connection.isUnfinished && self.connection(connection.descriptor) === connection {
            readAvailable(connection)
        }
    }

    /// Takes bytes read from `connection`; returns whether it is still open.
    private func received(_ bytes: UnsafeRawBufferPointer, on connection: SocketSubscriber) -> Bool {
        guard connection.phase == .upgrading else { return feed(bytes, to: connection) }
        let searchedUpTo = max(0, connection.responseHead.count - 3)  // a blank line may straddle two reads
        connection.responseHead.append(contentsOf: bytes)
        // Parsed once the head is complete (or too long), not again on every read of a head sent in small pieces.
        guard UpgradeHandshake.headEnd(in: connection.responseHead, from: searchedUpTo) != nil
            || connection.responseHead.count > UpgradeHandshake.maxResponseHeadBytes
        else { return true }
        switch connection.handshake.response(connection.responseHead) {
        case .incomplete:
            return true
        case .refused(let status):
            close(connection, failure: .refused(status: status))
            return false
        case .invalid(let why):
            close(connection, failure: .other("upgrade: \(why)"))
            return false
        case .accepted(let headLength):
            let head = connection.responseHead
            connection.responseHead = []
            connection.phase = .open
            connection.stream = SubscriberStream(index: recorder.register(job: connection.job), maxMessageBytes: settings.maxMessageBytes)
            // What came after the head — the ack and the snapshot, often in the same read — is the stream's.
            guard head.count > headLength else { return true }
            return head[headLength...].withUnsafeBytes { feed($0, to: connection) }
        }
    }

    /// Hands bytes to the connection's stream and does what it says; returns whether the connection is still open.
    private func feed(_ bytes: UnsafeRawBufferPointer, to connection: SocketSubscriber) -> Bool {
        guard connection.stream != nil else { return true }
        let outcome = connection.stream!.read(bytes, recorder: recorder) { connection.output += $0 }
        if outcome.becameReady {
            handshaking.remove(connection.descriptor)
            connection.ready?.resume(returning: .success(()))
            connection.ready = nil
        }
        if outcome.hangUp { connection.hangUpWhenWritten = true }
        guard !connection.output.isEmpty || connection.hangUpWhenWritten else { return true }
        return write(connection)
    }

    /// Writes what is waiting; returns whether the connection is still open.
    @discardableResult
    private func write(_ connection: SocketSubscriber) -> Bool {
        var written = 0
        while written < connection.output.count {
            let count = connection.output.withUnsafeBytes { bytes in
                send(connection.descriptor, bytes.baseAddress! + written, bytes.count - written, Int32(MSG_NOSIGNAL))
            }
            if count > 0 {
                written += count
            } else if count < 0 && errno == EINTR {
                continue
            } else if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                break
            } else {
                ended(connection)
                return false
            }
        }
        connection.output.removeFirst(written)
        if connection.output.isEmpty {
            connection.output = []  // not the capacity of the largest request or burst of pongs
            if connection.hangUpWhenWritten {
                ended(connection)
                return false
            }
        } else if connection.output.count > Self.maxOutputBytes {
            ended(connection)
            return false
        }
        watch(connection, writes: !connection.output.isEmpty)
        return true
    }

    /// Watches the connection for reads, and for writes while output waits.
    private func watch(_ connection: SocketSubscriber, writes: Bool) {
        let wanted = EPOLLIN.rawValue | EPOLLET.rawValue | (writes ? EPOLLOUT.rawValue : 0)
        guard wanted != connection.interest else { return }
        var event = epoll_event()
        event.events = wanted
        event.data.fd = connection.descriptor
        epoll_ctl(poller.epoll, EPOLL_CTL_MOD, connection.descriptor, &event)
        connection.interest = wanted
    }

    /// The connection ended (the bridge closed it, it failed, or this side hung up as the stream asked).
    private func ended(_ connection: SocketSubscriber) {
        switch connection.phase {
        case .connecting: close(connection, failure: .connect("connection reset"))
        case .upgrading: close(connection, failure: .closedDuringHandshake)
        case .open: close(connection, failure: .closedBeforeSnapshot(code: connection.stream?.closeCode))
        }
    }

    /// Closes the connection's socket, records the close, and fails its try with `failure` if it was still waiting.
    private func close(_ connection: SocketSubscriber, failure: ConnectFailure) {
        let slot = Int(connection.descriptor)
        guard slot < connections.count, connections[slot] === connection else { return }
        connections[slot] = nil
        openCount -= 1
        handshaking.remove(connection.descriptor)
        // Out of the epoll set first: a child process started meanwhile may hold a copy of the descriptor, which would
        // keep it registered past `close` and hand its events to the next socket given the same number.
        epoll_ctl(poller.epoll, EPOLL_CTL_DEL, connection.descriptor, nil)
        Glibc.close(connection.descriptor)
        if let stream = connection.stream { recorder.closed(connection: stream.index, code: stream.closeCode) }
        connection.ready?.resume(returning: .failure(failure))
        connection.ready = nil
        finishClosingIfDone()
    }

    /// Fails the tries past their deadline, and ends the final close once its wait is over.
    private func checkDeadlines() {
        guard !handshaking.isEmpty || closing != nil else { return }
        let now = ContinuousClock.now
        guard now - lastDeadlineCheck >= .milliseconds(20) else { return }
        lastDeadlineCheck = now
        for descriptor in handshaking {
            if let connection = connection(descriptor), now >= connection.deadline {
                close(connection, failure: connection.phase == .connecting ? .connect("timeout") : .timedOut)  // as the NIO engine says
            }
        }
        if let closing, now >= closing.deadline {
            for connection in connections.compactMap({ $0 }) { close(connection, failure: .other("stopped")) }
            finishClosingIfDone()
        }
    }

    private func finishClosingIfDone() {
        guard openCount == 0, let closing else { return }
        self.closing = nil
        closing.done.resume()
    }
}
#else
import NIOCore

/// The socket engine is Linux only (epoll); elsewhere the NIO engine runs.
struct SocketSubscriberEngine {
    static func start(configuration: LoadConfiguration, target: SubscriberTarget, address: SocketAddress) throws -> any SubscriberEngine {
        throw LoadError.invalidConfiguration("the sockets engine needs Linux (epoll); use the nio engine")
    }
}
#endif

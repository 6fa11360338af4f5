// The practical limit of fan-out on this machine, as raw librdkafka is for ingest: the same number of subscribers and
// events per second delivered by nothing but the kernel — plain TCP on loopback, one write of a ready-made message per
// connection per event from two sender threads (one per core, as the bridge's event loops), read in another process
// (as the load client is) by two epoll threads; no WebSocket, no Kafka, no event loop framework. What the bridge and
// the load client add to a delivery is measured against it, and its CPU per delivery is the kernel's share of theirs.
import Foundation
import SubscriberLoad
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What a raw fan-out run measured.
struct RawFanOutResult {
    let connected: Int
    /// Scheduled send time → read by the subscriber's reader thread, in ms.
    let latency: Percentiles
    let deliveriesPerSecond: Double
    /// Sent and never read (a short write, or not read by the end).
    let lost: Int
    /// CPU time (user + system) of the sender threads, and of the reader threads, per delivery, in µs.
    let sendMicroseconds: Double
    let receiveMicroseconds: Double
}

#if canImport(CLinuxEpoll)
import CLinuxEpoll

private struct RawFanOutFailure: Error, CustomStringConvertible {
    let description: String
}

private func monotonicNanoseconds() -> Int64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)  // system-wide: the same clock in both processes
    return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
}

private func threadCPUMicroseconds() -> Double {
    var usage = rusage()
    bb_thread_rusage(&usage)
    return usage.cpuMicroseconds
}

/// Runs `body` on a thread of its own; the returned semaphore is signalled when it ends.
private func onThread(_ body: @escaping @Sendable () -> Void) -> DispatchSemaphore {
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        body()
        done.signal()
    }
    return done
}

/// One thread's figures, handed back when it ends.
private final class ThreadFigures: @unchecked Sendable {
    // @unchecked: each instance is written by its one thread, and read after that thread has signalled its end.
    var latenciesMicroseconds: [Int32] = []
    var cpuMicroseconds: Double = 0
    var messages = 0
}

/// Delivers `rate` events per second for `duration` to `subscribers` TCP connections on loopback, each event one
/// `messageBytes` write per connection, stamped with its scheduled send time; the subscribers are this executable
/// again (`rawfanout-subscribers`), in a process of their own.
func rawFanOut(subscribers: Int, rate: Double, duration: Duration, readInterval: Duration, messageBytes: Int = 320) throws -> RawFanOutResult {
    OpenFileLimit.raiseToHardLimit()
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard listener >= 0 else { throw RawFanOutFailure(description: "socket: errno \(errno)") }
    defer { close(listener) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
    guard bound == 0, listen(listener, 65_535) == 0 else { throw RawFanOutFailure(description: "bind/listen: errno \(errno)") }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
    let port = Int(UInt16(bigEndian: address.sin_port))
    // A subscribers' process that fails (descriptors, ports) must not leave `accept` waiting for ever.
    var acceptTimeout = timeval(tv_sec: 60, tv_usec: 0)
    setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &acceptTimeout, socklen_t(MemoryLayout<timeval>.size))

    let ticks = Int(Double(duration.components.seconds) * rate)
    let child = Process()
    child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    child.arguments = ["rawfanout-subscribers", "\(port)", "\(subscribers)", "\(ticks * subscribers)", "\(messageBytes)", "\(duration.components.seconds + 10)",
        "\(Int(readInterval / .microseconds(1)))",
    ]
    let output = Pipe()
    child.standardOutput = output
    try child.run()
    ChildProcesses.started(child.processIdentifier)
    defer {
        if child.isRunning { child.terminate() }
        ChildProcesses.ended(child.processIdentifier)
    }

    var servers: [Int32] = []
    var one: Int32 = 1
    while servers.count < subscribers {
        let fd = accept(listener, nil, nil)
        guard fd >= 0 else { throw RawFanOutFailure(description: "accept: errno \(errno) after \(servers.count) connections") }
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        servers.append(fd)
    }
    defer {
        for fd in servers { close(fd) }
    }
    let reader = output.fileHandleForReading
    func readLine() -> String {
        var line: [UInt8] = []
        while let byte = try? reader.read(upToCount: 1)?.first, byte != UInt8(ascii: "\n") { line.append(byte) }
        return String(decoding: line, as: UTF8.self)
    }
    guard readLine() == "ready" else { throw RawFanOutFailure(description: "the subscribers' process did not get ready") }

    let threads = 2
    let interval = Int64(1e9 / rate)
    let start = monotonicNanoseconds() + 200_000_000
    let senderFigures = (0..<threads).map { _ in ThreadFigures() }
    let senders = (0..<threads).map { index in
        let mine = stride(from: index, to: servers.count, by: threads).map { servers[$0] }
        let figures = senderFigures[index]
        return onThread {
            var message = [UInt8](repeating: UInt8(ascii: "x"), count: messageBytes)
            let cpuBefore = threadCPUMicroseconds()
            var short = 0
            for tick in 0..<ticks {
                let due = start + Int64(tick) * interval
                var wake = timespec(tv_sec: Int(due / 1_000_000_000), tv_nsec: Int(due % 1_000_000_000))
                while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, nil) == EINTR {}
                for byte in 0..<8 { message[byte] = UInt8(truncatingIfNeeded: due >> (8 * byte)) }
                message.withUnsafeBytes { bytes in
                    for fd in mine where send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) != bytes.count { short += 1 }
                }
            }
            figures.cpuMicroseconds = threadCPUMicroseconds() - cpuBefore
            figures.messages = ticks * mine.count - short
        }
    }
    for sender in senders { sender.wait() }
    // The subscribers' summary: messages read, reader CPU µs, p50, p99, max (ms).
    let summary = readLine().split(separator: " ").compactMap { Double($0) }
    child.waitUntilExit()
    guard summary.count == 5 else { throw RawFanOutFailure(description: "the subscribers' process gave no summary") }
    let received = Int(summary[0])
    let sent = senderFigures.reduce(0) { $0 + $1.messages }
    return RawFanOutResult(
        connected: servers.count,
        latency: Percentiles(count: received, p50: summary[2], p99: summary[3], max: summary[4]),
        deliveriesPerSecond: Double(received) / (Double(ticks) / rate),
        lost: ticks * servers.count - received,
        sendMicroseconds: senderFigures.reduce(0) { $0 + $1.cpuMicroseconds } / Double(max(1, sent)),
        receiveMicroseconds: summary[1] / Double(max(1, received)))
}

/// The subscribers' side of `rawFanOut`, in a process of its own: `connections` connections to `port`, read by two
/// epoll threads until `expected` messages arrived or `timeoutSeconds` passed; prints "ready", then one line:
/// messages read, the readers' CPU µs, and the latency's p50, p99 and max in ms.
func rawFanOutSubscribers(port: Int, connections: Int, expected: Int, messageBytes: Int, timeoutSeconds: Int, readIntervalMicroseconds: Int) throws {
    OpenFileLimit.raiseToHardLimit()
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let threads = 2
    let pollers = (0..<threads).map { _ in epoll_create1(0) }
    guard pollers.allSatisfy({ $0 >= 0 }) else { throw RawFanOutFailure(description: "epoll_create1: errno \(errno)") }
    var clients: [Int32] = []
    for index in 0..<connections {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RawFanOutFailure(description: "socket: errno \(errno) after \(clients.count) connections") }
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { throw RawFanOutFailure(description: "connect: errno \(errno) after \(clients.count) connections") }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLET.rawValue  // as the load client; here each socket is read until it is empty
        event.data.fd = fd
        epoll_ctl(pollers[index % threads], EPOLL_CTL_ADD, fd, &event)
        clients.append(fd)
    }
    let maxDescriptor = Int(clients.max() ?? 0)
    let received = Atomic<Int>(0)
    let deadline = monotonicNanoseconds() + Int64(timeoutSeconds) * 1_000_000_000
    let figures = (0..<threads).map { _ in ThreadFigures() }
    FileHandle.standardOutput.write(Data("ready\n".utf8))
    let readers = (0..<threads).map { index in
        let poller = pollers[index]
        let mine = figures[index]
        return onThread {
            // Where each connection is within its current message, and that message's stamp so far.
            var within = [Int](repeating: 0, count: maxDescriptor + 1)
            var stamps = [Int64](repeating: 0, count: maxDescriptor + 1)
            var latencies: [Int32] = []
            latencies.reserveCapacity(expected / threads + 1_024)
            var events = [epoll_event](repeating: epoll_event(), count: 512)
            var buffer = [UInt8](repeating: 0, count: 16_384)
            let cpuBefore = threadCPUMicroseconds()
            while received.load(ordering: .relaxed) < expected, monotonicNanoseconds() < deadline {
                let ready = epoll_wait(poller, &events, Int32(events.count), 50)
                guard ready > 0 else { continue }
                let wokeAt = monotonicNanoseconds()
                var count = 0
                for i in 0..<Int(ready) {
                    let fd = events[i].data.fd
                    while true {
                        let read = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                        if read < 0 && errno == EINTR { continue }  // (edge-triggered: what is left would wait for more bytes)
                        if read == 0 || (read < 0 && errno != EAGAIN) {
                            epoll_ctl(poller, EPOLL_CTL_DEL, fd, nil)  // closed: not watched any more
                        }
                        guard read > 0 else { break }
                        // Each read's own time, as the load client stamps each message (not the round's start).
                        let now = monotonicNanoseconds()
                        for byte in buffer[0..<read] {
                            let at = within[Int(fd)]
                            if at < 8 { stamps[Int(fd)] |= Int64(byte) << (8 * at) }
                            if at + 1 == messageBytes {
                                latencies.append(Int32(clamping: (now - stamps[Int(fd)]) / 1000))
                                count += 1
                                within[Int(fd)] = 0
                                stamps[Int(fd)] = 0
                            } else {
                                within[Int(fd)] = at + 1
                            }
                        }
                        if read < buffer.count { break }
                    }
                }
                received.add(count, ordering: .relaxed)
                // Paced as the load client's socket engine is (`LoadConfiguration.readInterval`): not after a full batch.
                let wait = wokeAt + Int64(readIntervalMicroseconds) * 1000 - monotonicNanoseconds()
                if wait > 0, ready < events.count {
                    var request = timespec(tv_sec: Int(wait / 1_000_000_000), tv_nsec: Int(wait % 1_000_000_000))
                    nanosleep(&request, nil)
                }
            }
            mine.cpuMicroseconds = threadCPUMicroseconds() - cpuBefore
            mine.latenciesMicroseconds = latencies
        }
    }
    for reader in readers { reader.wait() }
    let latencies = Percentiles(figures.flatMap(\.latenciesMicroseconds).map { Double($0) / 1000 })
    FileHandle.standardOutput.write(Data("\(latencies.count) \(figures.reduce(0) { $0 + $1.cpuMicroseconds }) \(latencies.p50) \(latencies.p99) \(latencies.max)\n".utf8))
    for fd in clients { close(fd) }
}
#else
func rawFanOut(subscribers: Int, rate: Double, duration: Duration, readInterval: Duration, messageBytes: Int = 320) throws -> RawFanOutResult {
    struct Unsupported: Error {}
    throw Unsupported()  // epoll: Linux only
}

func rawFanOutSubscribers(port: Int, connections: Int, expected: Int, messageBytes: Int, timeoutSeconds: Int, readIntervalMicroseconds: Int) throws {
    struct Unsupported: Error {}
    throw Unsupported()
}
#endif

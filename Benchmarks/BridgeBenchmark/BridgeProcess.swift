import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The real `progress-bridge` binary, started as its own process (so that its memory is its own to measure)
/// against the harness's mock cluster, on free ports; its log goes to a file.
final class BridgeProcess {
    let process = Process()
    let port: Int
    let adminPort: Int
    let logPath: String

    /// Starts `binary` with `arguments` plus its ports; the caller adds the Kafka and topic flags.
    init(binary: String, arguments: [String], label: String) throws {
        port = try freePort()
        adminPort = try freePort()
        logPath = NSTemporaryDirectory() + "bridge-benchmark-\(getpid())-\(label).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments + ["--port", String(port), "--admin-port", String(adminPort), "--host", "127.0.0.1"]
        process.standardOutput = log
        process.standardError = log
        try process.run()
        ChildProcesses.started(process.processIdentifier)
    }

    var pid: Int32 { process.processIdentifier }
    var webSocketURL: String { "ws://127.0.0.1:\(port)/" }

    /// Polls `/readyz` until it answers 200; returns how long that took from `since`.
    func waitReady(since: ContinuousClock.Instant = .now, timeout: Duration = .seconds(120)) async throws -> Duration {
        while ContinuousClock.now - since < timeout {
            guard process.isRunning else { throw BenchmarkError("the bridge exited (\(process.terminationStatus)); see \(logPath)") }
            if httpGet(port: adminPort, path: "/readyz")?.status == 200 { return ContinuousClock.now - since }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw BenchmarkError("the bridge was not ready within \(timeout); see \(logPath)")
    }

    /// The process's resident set size, in bytes (`VmRSS` of /proc/PID/status).
    var residentBytes: Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return 0 }
        return kib * 1024
    }

    /// The CPU time the process used so far, user + system, in seconds (`utime` + `stime` of /proc/PID/stat).
    var cpuSeconds: Double {
        // The fields after the command name, which is in parentheses and may hold spaces: state is field 3, utime 14.
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let end = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The value of an unlabelled metric from `/metrics` (the bridge's names start with `progress_bridge_`).
    func metric(_ name: String) -> Double? {
        guard let body = httpGet(port: adminPort, path: "/metrics")?.body else { return nil }
        for line in body.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    /// SIGTERM, then waits for the exit (the bridge checkpoints and leaves its group on the way out).
    func stop() {
        defer { ChildProcesses.ended(pid) }  // (also when it has exited already: its pid may be reused)
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
        ChildProcesses.ended(pid)
    }
}

struct BenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A port nobody listens on now (bound to port 0 and released; the bridge binds it a moment later).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw BenchmarkError("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw BenchmarkError("bind() failed") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A blocking HTTP/1.1 GET on 127.0.0.1 (status and body), or nil if nothing answered. Enough for probes and
/// scrapes; not a client for anything else.
func httpGet(port: Int, path: String) -> (status: Int, body: String)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { return nil }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else { return nil }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard text.hasPrefix("HTTP/1.1 "), let status = Int(text.dropFirst(9).prefix(3)) else { return nil }
    let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
    return (status, body)
}

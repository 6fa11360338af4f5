import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The processes this harness started (bridges, the raw fan-out's subscribers), so that a harness stopped with
/// SIGINT or SIGTERM takes them down with it: a bridge left running idle beside later measurements skewed them.
/// (SIGKILL cannot be caught; its children are left.)
enum ChildProcesses {
    private static let running = Mutex<Set<pid_t>>([])
    /// Set by the first signal: a second one (SIGINT and SIGTERM both) does not stop the children twice.
    private static let stopping = Atomic<Bool>(false)
    /// How long the children get to stop after SIGTERM, while this process still runs the mock cluster they write
    /// their last checkpoint to; then SIGKILL.
    private static let grace: Duration = .seconds(15)
    /// The signal sources, kept for the life of the process; written once, at start, before any other thread looks.
    nonisolated(unsafe) private static var handlers: [any DispatchSourceSignal] = []

    /// On SIGINT or SIGTERM: stops every running child (SIGTERM, then SIGKILL after `grace`), then exits. Call once,
    /// at start.
    static func stopWithHarness() {
        let queue = DispatchQueue(label: "bridge-benchmark.signals")
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)  // the source sees it; the default action would end the harness first
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
            source.setEventHandler { stopChildrenAndExit(signalNumber) }
            source.resume()
            handlers.append(source)
        }
    }

    private static func stopChildrenAndExit(_ signalNumber: Int32) {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let children = running.withLock { $0 }
        for pid in children { kill(pid, SIGTERM) }
        let deadline = ContinuousClock.now + grace
        var left = children.filter(isAlive)
        while !left.isEmpty, ContinuousClock.now < deadline {
            usleep(50_000)
            left = left.filter(isAlive)
        }
        for pid in left { kill(pid, SIGKILL) }
        FileHandle.standardError.write(
            Data("bridge-benchmark: stopped by signal \(signalNumber); \(children.count) child process(es) stopped, \(left.count) of them killed\n".utf8))
        exit(128 + signalNumber)
    }

    /// Whether `pid` is still running (a zombie has exited: Foundation reaps it).
    private static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let end = stat.lastIndex(of: ")")
        else { return false }
        return !stat[stat.index(after: end)...].hasPrefix(" Z")
    }

    /// Records a child that was just started.
    static func started(_ pid: pid_t) {
        running.withLock { _ = $0.insert(pid) }
    }

    /// Records a child that has exited (or is about to be waited for).
    static func ended(_ pid: pid_t) {
        running.withLock { _ = $0.remove(pid) }
    }
}

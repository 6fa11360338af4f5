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
    /// The signal sources, kept for the life of the process; written once, at start, before any other thread looks.
    nonisolated(unsafe) private static var handlers: [any DispatchSourceSignal] = []

    /// Stops every running child with SIGTERM, then exits, on SIGINT or SIGTERM. Call once, at start.
    static func stopWithHarness() {
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)  // the source sees it; the default action would end the harness first
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                let children = running.withLock { $0 }
                for pid in children { kill(pid, SIGTERM) }
                FileHandle.standardError.write(Data("bridge-benchmark: stopped by signal \(signalNumber); sent SIGTERM to \(children.count) child process(es)\n".utf8))
                exit(128 + signalNumber)
            }
            source.resume()
            handlers.append(source)
        }
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

import Logging
import ServiceLifecycle

/// On graceful shutdown, closes every subscriber with 1001 (going away) before the HTTP server
/// stops — the WebSocket library would otherwise close them with 1000 — and waits briefly for
/// the close frames to go out. Place it after the application in the service group, so that it
/// is shut down first.
struct SubscriberDrain: Service {
    let store: JobStore
    /// Connections still waiting for a request head are closed too: they would hold the server's shutdown open.
    var gate: HTTPConnectionGate? = nil
    let logger: Logger
    /// How long to wait for sessions to end.
    var timeout: Duration = .seconds(3)

    func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            return  // cancelled: nothing to drain
        }
        let open = store.subscriberCount
        store.closeAllSubscribers(.shuttingDown)
        if let closed = gate?.closeWaitingForHead(), closed > 0 {
            logger.info("closed connections that never sent a request", metadata: ["count": "\(closed)"])
        }
        let deadline = ContinuousClock.now + timeout
        while store.subscriberCount > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        logger.info("subscribers closed (1001)", metadata: ["count": "\(open)", "still_open": "\(store.subscriberCount)"])
    }
}

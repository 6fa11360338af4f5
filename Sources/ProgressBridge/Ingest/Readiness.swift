import Kafka
import Synchronization

/// What `/readyz` reports: ready once ingest runs and while Kafka is reachable.
public final class Readiness: Sendable {
    private let ingestRunning = Atomic<Bool>(false)
    private let kafkaStatus = Mutex<KafkaClientStatus?>(nil)

    public init() {}

    func ingestStarted(status: KafkaClientStatus) {
        kafkaStatus.withLock { $0 = status }
        ingestRunning.store(true, ordering: .releasing)
    }

    func ingestStopped() {
        ingestRunning.store(false, ordering: .releasing)
    }

    /// Each check by name, and whether it passes.
    public var checks: [(name: String, ok: Bool, detail: String?)] {
        let running = ingestRunning.load(ordering: .acquiring)
        let status = kafkaStatus.withLock { $0 }
        let kafkaOK = status.map { !$0.allBrokersDown } ?? false
        return [
            ("ingest", running, running ? nil : "the Kafka consumer is not running yet"),
            ("kafka", kafkaOK, kafkaOK ? nil : (status?.lastError ?? "not connected yet")),
        ]
    }

    /// Whether every check passes.
    public var isReady: Bool { checks.allSatisfy(\.ok) }
}

import Kafka
import Synchronization

/// What `/readyz` reports: ready once ingest runs and while Kafka is reachable.
public final class Readiness: Sendable {
    private let ingestRunning = Atomic<Bool>(false)
    private let kafkaStatus = Mutex<KafkaClientStatus?>(nil)
    private let deadLetterProblem = Mutex<String?>(nil)
    private let startupProblem = Mutex<String?>(nil)
    /// Called the first time ingest starts (the embedded default then says where its page is).
    private let firstStart = Mutex<(@Sendable () -> Void)?>(nil)

    public init() {}

    /// Runs `action` once, when ingest first starts (caught up with the input topics).
    public func onFirstReady(_ action: @escaping @Sendable () -> Void) {
        firstStart.withLock { $0 = action }
    }

    func ingestStarted(status: KafkaClientStatus) {
        kafkaStatus.withLock { $0 = status }
        ingestRunning.store(true, ordering: .releasing)
        firstStart.withLock { action in
            defer { action = nil }
            return action
        }?()
    }

    /// A dead-letter write Kafka refuses for good: ingest holds (nothing is skipped) until it is fixed.
    func deadLettersBlocked(_ reason: String?) {
        deadLetterProblem.withLock { $0 = reason }
    }

    /// What keeps ingest from starting (a missing topic, a state topic that is not compacted), until it is fixed.
    func startupBlocked(_ reason: String?) {
        startupProblem.withLock { $0 = reason }
    }

    /// Whether ingest has started (and caught up with the input topics).
    var isIngestRunning: Bool { ingestRunning.load(ordering: .acquiring) }

    func ingestStopped() {
        ingestRunning.store(false, ordering: .releasing)
    }

    /// Each check by name, and whether it passes.
    public var checks: [(name: String, ok: Bool, detail: String?)] {
        let running = ingestRunning.load(ordering: .acquiring)
        let status = kafkaStatus.withLock { $0 }
        let kafkaOK = status.map { !$0.allBrokersDown } ?? false
        let blocked = deadLetterProblem.withLock { $0 }
        let startup = startupProblem.withLock { $0 }
        return [
            ("ingest", running, running ? nil : startup ?? "restoring state or catching up with the input topics"),
            ("kafka", kafkaOK, kafkaOK ? nil : (status?.lastError ?? "not connected yet")),
            ("dead_letters", blocked == nil, blocked.map { "ingest holds: the dead-letter topic refuses writes: \($0)" }),
        ]
    }

    /// Whether every check passes.
    public var isReady: Bool { checks.allSatisfy(\.ok) }
}

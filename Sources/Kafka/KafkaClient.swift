import CRdKafka
import Logging
import NIOPosix
import Synchronization

/// What librdkafka reported through its callbacks: errors and whether brokers are reachable.
public final class KafkaClientStatus: Sendable {
    private struct State {
        var lastError: String?
        var errorCount = 0
        var allBrokersDown = false
        var brokers: [KafkaBrokerStatistics] = []
    }
    private let state = Mutex(State())
    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// The most recent error librdkafka reported, if any.
    public var lastError: String? { state.withLock { $0.lastError } }
    /// Whether all brokers are down: set by librdkafka's error callback, and from its statistics (when
    /// `statistics.interval.ms` is set) whenever no broker is `UP`; cleared by a broker `UP` or a message flowing.
    public var allBrokersDown: Bool { state.withLock { $0.allBrokersDown } }

    func recordError(code: rd_kafka_resp_err_t, reason: String) {
        let isAllDown = code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN
        let count = state.withLock { s -> Int in
            s.lastError = reason
            s.errorCount += 1
            if isAllDown { s.allBrokersDown = true }
            return s.errorCount
        }
        // Transport errors repeat while a broker is away; log the first ones and then sparsely.
        if count <= 5 || count % 100 == 0 {
            logger.warning("kafka client error", metadata: ["code": "\(code.rawValue)", "reason": "\(reason)", "errors_so_far": "\(count)"])
        }
    }

    /// The brokers as of librdkafka's latest statistics (empty unless `statistics.interval.ms` is set).
    public var brokers: [KafkaBrokerStatistics] { state.withLock { $0.brokers } }

    /// Broker connection states from librdkafka's statistics are the source of truth for reachability: an
    /// outage clears once a broker is `UP` again, even when no message has flowed since.
    func recordStatistics(_ json: [UInt8]) {
        guard let brokers = KafkaStatisticsDecoder.brokers(json) else { return }
        state.withLock { s in
            s.brokers = brokers
            if !brokers.isEmpty { s.allBrokersDown = !brokers.contains { $0.state == "UP" } }
        }
    }

    func markHealthy() {
        state.withLock { $0.allBrokersDown = false }
    }
}

/// Owns one `rd_kafka_t` handle and its callbacks' context.
final class KafkaClientHandle: @unchecked Sendable {
    // librdkafka handles are thread-safe; the pointer itself never changes.
    let pointer: OpaquePointer
    let status: KafkaClientStatus
    private let statusBox: Unmanaged<KafkaClientStatus>
    /// How many times `poll` ran (for tests).
    let pollCount = Atomic<Int>(0)
    /// Set when a consumer's close did not finish in time: destroying must not try again (it would wait as long).
    let skipConsumerClose = Atomic<Bool>(false)
    /// Set once a group consumer receives an assignment (see `KafkaGroupMembership`'s deinit).
    let wasAssigned = Atomic<Bool>(false)
    /// Set by `abandon()`: the handle is never destroyed (its threads and callbacks' context live on).
    private let abandoned = Atomic<Bool>(false)

    /// Leaves the handle undestroyed when this object goes: only for a handle that librdkafka cannot destroy safely.
    func abandon() { abandoned.store(true, ordering: .releasing) }

    init(type: rd_kafka_type_t, properties: KafkaProperties, logger: Logger, configure: (OpaquePointer) -> Void = { _ in }) throws(KafkaError) {
        let conf = try properties.makeConf()
        let status = KafkaClientStatus(logger: logger)
        let box = Unmanaged.passRetained(status)
        rd_kafka_conf_set_opaque(conf, box.toOpaque())
        rd_kafka_conf_set_error_cb(conf) { _, err, reason, opaque in
            guard let opaque else { return }
            let status = Unmanaged<KafkaClientStatus>.fromOpaque(opaque).takeUnretainedValue()
            status.recordError(code: rd_kafka_resp_err_t(rawValue: err), reason: reason.map { String(cString: $0) } ?? "")
        }
        rd_kafka_conf_set_log_cb(conf) { rk, level, facility, message in
            guard let rk, let opaque = rd_kafka_opaque(rk) else { return }
            let status = Unmanaged<KafkaClientStatus>.fromOpaque(opaque).takeUnretainedValue()
            let text = message.map { String(cString: $0) } ?? ""
            let fac = facility.map { String(cString: $0) } ?? ""
            // syslog levels: 0-3 error, 4 warning, 5-6 info/notice, 7 debug.
            let logLevel: Logger.Level = level <= 3 ? .error : level == 4 ? .warning : level <= 6 ? .info : .debug
            status.logger.log(level: logLevel == .info ? .debug : logLevel, "librdkafka: \(text)", metadata: ["facility": "\(fac)"])
        }
        rd_kafka_conf_set_stats_cb(conf) { _, json, length, opaque in
            guard let opaque, let json else { return 0 }
            let status = Unmanaged<KafkaClientStatus>.fromOpaque(opaque).takeUnretainedValue()
            status.recordStatistics(Array(UnsafeRawBufferPointer(start: json, count: length)))
            return 0  // librdkafka frees the JSON
        }
        configure(conf)
        var errorBuffer = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(type, conf, &errorBuffer, errorBuffer.count) else {
            rd_kafka_conf_destroy(conf)
            box.release()
            let reason = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw KafkaError(code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, message: "cannot create Kafka client: \(reason)")
        }
        self.pointer = handle
        self.status = status
        self.statusBox = box
    }

    deinit {
        if abandoned.load(ordering: .acquiring) { return }  // its callbacks still use `statusBox`: kept too
        if skipConsumerClose.load(ordering: .acquiring) {
            rd_kafka_destroy_flags(pointer, Int32(RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE))
        } else {
            rd_kafka_destroy(pointer)
        }
        statusBox.release()
    }
}

extension KafkaClientHandle {
    /// Serves the handle's events (delivery reports, statistics, errors), waiting up to `timeoutMs`. Blocks.
    func poll(timeoutMs: Int32) -> Int32 {
        pollCount.add(1, ordering: .relaxed)
        return rd_kafka_poll(pointer, timeoutMs)
    }
}

/// The threads librdkafka's blocking calls wait on. Not NIO's shared pool, which has as many threads as cores (two
/// here): a call may wait seconds on a slow broker (a metadata query, a committed-offsets look-up, a close), and two
/// such calls hold up every other client's poll, the ingest reader's among them (`KafkaWaitPoolTests`). A bridge
/// has about eight Kafka clients, each with a call or two waiting at most; a waiting thread costs no CPU.
let kafkaWaitPool: NIOThreadPool = {
    let pool = NIOThreadPool(numberOfThreads: 16)
    pool.start()
    return pool
}()

/// Runs a blocking librdkafka call on `pool` (the shared Kafka pool unless a reader passes its own thread) so it
/// never blocks the cooperative pool — also when the task is cancelled (`runIfActive` would give up on the work
/// item, and the call would have to run inline on the cooperative pool: shutdown is done by cancelling, and it
/// closes consumers and writes checkpoints).
func blocking<T: Sendable>(on pool: NIOThreadPool = kafkaWaitPool, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        pool.submit { _ in continuation.resume(returning: body()) }
    }
}

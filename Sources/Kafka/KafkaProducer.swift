import CRdKafka
import Logging
import Synchronization

/// A librdkafka producer. `send` waits for the broker's acknowledgement; `produce` does not.
public final class KafkaProducer: Sendable {
    private let client: KafkaClientHandle
    private let deliveryPoller: DeliveryPoller

    /// What librdkafka reported (errors, broker reachability).
    public var status: KafkaClientStatus { client.status }

    /// Creates the producer.
    public init(configuration: KafkaProducerConfiguration, logger: Logger) throws(KafkaError) {
        client = try KafkaClientHandle(type: RD_KAFKA_PRODUCER, properties: configuration.effectiveProperties, logger: logger) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, _ in
                guard let message, let opaque = message.pointee._private else { return }
                Unmanaged<DeliveryReport>.fromOpaque(opaque).takeRetainedValue().complete(message.pointee.err)
            }
        }
        deliveryPoller = DeliveryPoller(client: client)
    }

    /// Writes one record and waits until the broker acknowledged it (or librdkafka gave up).
    /// A `nil` value is a tombstone (it deletes the key from a compacted topic).
    public func send(topic: String, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = []) async throws(KafkaError) {
        let report = DeliveryReport()
        let opaque = Unmanaged.passRetained(report).toOpaque()
        do {
            try enqueue(topic: topic, key: key, value: value, headers: headers, opaque: opaque)
        } catch {
            Unmanaged<DeliveryReport>.fromOpaque(opaque).release()
            throw error
        }
        // Delivery reports are served by rd_kafka_poll: by one loop however many sends wait (message.timeout.ms
        // bounds each wait).
        deliveryPoller.waiterAdded()
        let err = await report.outcome()
        deliveryPoller.waiterRemoved()
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "deliver to \(topic)") }
        client.status.markHealthy()
    }

    /// Writes every record and waits until each is acknowledged (or librdkafka gave up on it); throws the
    /// first failure. For many records at once — one delivery report each, served by one poll loop.
    ///
    /// `abandonIf` is asked while waiting; when it says so (shutdown), waiting ends with `_DESTROY` — the records
    /// may still be delivered later by librdkafka (at-least-once).
    public func sendAll(_ records: [KafkaRecord], abandonIf: () -> Bool = { false }) async throws(KafkaError) {
        var reports: [DeliveryReport] = []
        reports.reserveCapacity(records.count)
        for record in records {
            let report = DeliveryReport()
            let opaque = Unmanaged.passRetained(report).toOpaque()
            while true {
                do {
                    try enqueue(topic: record.topic, key: record.key, value: record.value, headers: record.headers, opaque: opaque)
                    break
                } catch where error.code == RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue {
                    await poll(timeoutMs: 10)  // librdkafka's queue is full: let deliveries drain it
                } catch {
                    Unmanaged<DeliveryReport>.fromOpaque(opaque).release()
                    throw error
                }
            }
            reports.append(report)
        }
        var next = 0
        while next < reports.count {
            if let err = reports[next].result {
                if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "deliver to \(records[next].topic)") }
                next += 1
            } else {
                if abandonIf() { throw KafkaError(code: RD_KAFKA_RESP_ERR__DESTROY.rawValue, message: "stopped waiting for delivery to \(records[next].topic)") }
                await poll(timeoutMs: 10)
            }
        }
        if !records.isEmpty { client.status.markHealthy() }
    }

    /// The error the cluster reports for `topic` in its metadata (not authorised, unknown, …), if any. For telling a
    /// refusal that retrying cannot cure from a delivery that merely timed out.
    public func topicError(_ topic: String, timeoutMs: Int32 = 5000) async -> KafkaError? {
        let client = self.client
        return await blocking { () -> KafkaError? in
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let handle = rd_kafka_topic_new(client.pointer, topic, nil)
            defer { if let handle { rd_kafka_topic_destroy(handle) } }
            let err = rd_kafka_metadata(client.pointer, 0, handle, &metadata, timeoutMs)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { return nil }
            defer { rd_kafka_metadata_destroy(metadata) }
            guard metadata.pointee.topic_cnt > 0 else { return nil }
            let entry = metadata.pointee.topics[0]
            return entry.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(entry.err, context: "metadata of \(topic)")
        }
    }

    /// Queues one record without waiting; call `poll` or `flush` to serve delivery reports.
    public func produce(topic: String, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader] = [], partition: Int32? = nil) throws(KafkaError) {
        try enqueue(topic: topic, key: key, value: value, headers: headers, opaque: nil, partition: partition)
    }

    /// Serves delivery reports, waiting up to `timeoutMs`.
    public func poll(timeoutMs: Int32 = 0) async {
        let client = self.client
        _ = await blocking { client.poll(timeoutMs: timeoutMs) }
    }

    /// How many times librdkafka was polled for this producer's events (for tests).
    var pollCount: Int { client.pollCount.load(ordering: .relaxed) }

    /// Waits until every queued record is delivered, or fails after `timeoutMs`.
    public func flush(timeoutMs: Int32) async throws(KafkaError) {
        let client = self.client
        let err = await blocking { rd_kafka_flush(client.pointer, timeoutMs) }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "flush") }
    }

    private func enqueue(topic: String, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader], opaque: UnsafeMutableRawPointer?, partition: Int32? = nil) throws(KafkaError) {
        var hdrs: OpaquePointer?
        if !headers.isEmpty {
            hdrs = rd_kafka_headers_new(headers.count)
            for header in headers {
                if let v = header.value {
                    v.withUnsafeBytes { _ = rd_kafka_header_add(hdrs, header.name, -1, $0.baseAddress, $0.count) }
                } else {
                    _ = rd_kafka_header_add(hdrs, header.name, -1, nil, 0)
                }
            }
        }
        func produce(_ valuePointer: UnsafeRawPointer?, _ valueLength: Int) -> rd_kafka_resp_err_t {
            let send = { (keyPointer: UnsafeRawPointer?, keyLength: Int) in
                pb_rd_kafka_produce(
                    self.client.pointer, topic, partition ?? RD_KAFKA_PARTITION_UA, keyPointer, keyLength,
                    valuePointer, valueLength, hdrs, opaque)
            }
            if let key { return key.withUnsafeBytes { send($0.baseAddress, $0.count) } }
            return send(nil, 0)
        }
        // A nil pointer means "no value" (a tombstone); an empty value needs a real pointer.
        let err: rd_kafka_resp_err_t
        if let value {
            err = (value.isEmpty ? [0] : value).withUnsafeBytes { produce($0.baseAddress, value.count) }
        } else {
            err = produce(nil, 0)
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            if let hdrs { rd_kafka_headers_destroy(hdrs) }
            throw KafkaError(err, context: "produce to \(topic)")
        }
    }
}

/// The outcome of one delivery, filled in by librdkafka's delivery-report callback.
final class DeliveryReport: Sendable {
    private struct State {
        var result: rd_kafka_resp_err_t?
        var waiter: CheckedContinuation<rd_kafka_resp_err_t, Never>?
    }
    private let state = Mutex(State())

    var result: rd_kafka_resp_err_t? { state.withLock { $0.result } }

    func complete(_ err: rd_kafka_resp_err_t) {
        let waiter = state.withLock { s in
            s.result = err
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: err)
    }

    /// Waits for the outcome; somebody else polls librdkafka (`DeliveryPoller`).
    func outcome() async -> rd_kafka_resp_err_t {
        await withCheckedContinuation { continuation in
            let known = state.withLock { s -> rd_kafka_resp_err_t? in
                if s.result == nil { s.waiter = continuation }
                return s.result
            }
            if let known { continuation.resume(returning: known) }
        }
    }
}

/// Serves a producer's delivery reports while any `send` waits for one: one loop on the Kafka pool, started by the
/// first waiting send and ended when none waits — not a poll loop per waiting send, which kept as many of the
/// pool's threads busy (commands are published 32 at a time) and queued everybody's calls behind them.
final class DeliveryPoller: Sendable {
    private struct State {
        var waiting = 0
        var polling = false
    }
    private let state = Mutex(State())
    private let client: KafkaClientHandle

    init(client: KafkaClientHandle) {
        self.client = client
    }

    func waiterAdded() {
        let start = state.withLock { s -> Bool in
            s.waiting += 1
            defer { s.polling = true }
            return !s.polling
        }
        if start { kafkaWaitPool.submit { _ in self.run() } }
    }

    func waiterRemoved() {
        state.withLock { $0.waiting -= 1 }
    }

    private func run() {
        // Whether to go on is decided under the lock that `waiterAdded` takes: a send either finds the loop still
        // running (and it polls again for it) or starts a new one.
        while state.withLock({ s in
            if s.waiting == 0 { s.polling = false }
            return s.polling
        }) {
            // Returns as soon as it has served a report (or after 100 ms with none).
            _ = client.poll(timeoutMs: 100)
        }
    }
}

/// One record to write.
public struct KafkaRecord: Sendable {
    public let topic: String
    public let key: [UInt8]?
    /// `nil`: a tombstone.
    public let value: [UInt8]?
    public let headers: [KafkaHeader]

    public init(topic: String, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = []) {
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
    }
}

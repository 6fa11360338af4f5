import Crypto
import Foundation
import JSONSchema
import Kafka
import Logging
import ProgressContract
import SubscriberProtocol
import Synchronization

/// Relays job commands to the progress monitor through the command topic: checks the request against the command
/// schemas, the requester's grant and the job's current state, publishes the command (key = job id) and answers
/// once Kafka has acknowledged it. It never changes a job itself: the monitor's events do.
public final class JobCommandRelay: Sendable {
    /// What a command request got.
    public enum Outcome: Sendable, Equatable {
        /// Published and acknowledged by Kafka (or the same request was, earlier: `repeated`).
        case accepted(AcceptedCommand, repeated: Bool)
        /// The request cannot be served: HTTP status, error code, message.
        case refused(status: Int, code: String, message: String)
    }


    let topic: String
    let producer: KafkaProducer?
    private let store: JobStore
    private let validator: JSONSchemaValidator
    private let metrics: BridgeMetrics
    private let logger: Logger
    /// Answers to requests with an Idempotency-Key: the command's identity and a digest of the request, never the
    /// request itself (a body can be 64 KiB; 10,000 of them must not be).
    private let remembered = IdempotencyCache<AcceptedCommand>()
    /// Largest request body accepted.
    public static let maxBodyBytes = 64 * 1024
    /// Commands being published at once, over all clients; more are answered 503 at once. Each waits on Kafka's
    /// acknowledgement (one loop serves them all) and holds its HTTP request open meanwhile: without a cap, a flood
    /// of requests while Kafka is slow would pile up.
    public static let maxInFlight = 32
    private let inFlight = Atomic<Int>(0)
    /// How long a publish may take before the request is answered 503: the command producer's `message.timeout.ms`.
    public static let publishTimeoutMs = 5000

    /// `producer` nil: commands are answered 503 (no command topic configured).
    public init(topic: String, producer: KafkaProducer?, store: JobStore, validator: JSONSchemaValidator, metrics: BridgeMetrics, logger: Logger) {
        self.topic = topic
        self.producer = producer
        self.store = store
        self.validator = validator
        self.metrics = metrics
        self.logger = logger
    }

    /// Compiles the validator of command records (`commands/command.schema.json`) from the contract's registry.
    public static func commandValidator(schemasPath: String) throws(StartupError) -> JSONSchemaValidator {
        var registry = SchemaRegistry()
        do {
            try registry.addDirectory(schemasPath, uriPrefix: ContractSchemas.uriPrefix)
            return try JSONSchemaValidator(
                registry: registry, uri: ContractSchemas.uriPrefix + "commands/command.schema.json",
                options: ValidatorOptions(formatAssertion: false, unknownKeywords: .reject))
        } catch {
            throw StartupError("cannot load the command schemas from --schemas \(schemasPath): \(error.message)")
        }
    }

    /// Handles one request: `jobId` nil for `create`; `body` the request's JSON (empty: `{}`); `traceparent` the
    /// request's trace context (checked), carried to the command topic as a header.
    public func submit(
        _ kind: JobCommandKind, jobId: String?, body: [UInt8], grant: Grant, idempotencyKey: String?, traceparent: String
    ) async -> Outcome {
        let outcome = await decide(kind, jobId: jobId, body: body, grant: grant, idempotencyKey: idempotencyKey, traceparent: traceparent)
        metrics.command(kind, outcome)
        return outcome
    }

    private func decide(
        _ kind: JobCommandKind, jobId: String?, body: [UInt8], grant: Grant, idempotencyKey: String?, traceparent: String
    ) async -> Outcome {
        if let idempotencyKey, !IdempotencyKey.isValid(idempotencyKey) {
            return .refused(status: 400, code: "invalid_idempotency_key", message: "Idempotency-Key must be 1 to 128 printable ASCII characters")
        }
        // Authorization first: a refusal never tells whether a job exists.
        if let jobId {
            guard grant.controls(jobId) else {
                return .refused(status: 403, code: "forbidden", message: "the token does not grant control of job \(jobId.prefix(130))")
            }
        } else if !grant.mayCreate {
            return .refused(status: 403, code: "forbidden", message: "the token does not grant creating jobs (control: [\"*\"])")
        }
        guard body.count <= Self.maxBodyBytes else {
            return .refused(status: 413, code: "body_too_large", message: "the request body is larger than \(Self.maxBodyBytes) bytes")
        }
        let data: JSONValue
        do {
            data = body.isEmpty ? .object([:]) : try JSONParser(limits: .init(maxDepth: 16, maxBytes: Self.maxBodyBytes)).parse(body)
        } catch {
            return .refused(status: 400, code: "invalid_body", message: "the body is not a JSON object of at most 16 levels")
        }
        let fingerprint = SHA256.hash(data: Array((kind.rawValue + "|" + (jobId ?? "") + "|" + data.serialized()).utf8)).description
        let now = WallClock.nowMs()
        // Per requester: the same key from two subjects is two requests. Hashed, so an entry is small whatever the token.
        let rememberedKey = idempotencyKey.map { SHA256.hash(data: Array(((grant.subject ?? "") + "\u{0}" + $0).utf8)).description }
        if let rememberedKey, let entry = remembered.lookup(rememberedKey, now: now) {
            guard entry.fingerprint == fingerprint else {
                return .refused(status: 422, code: "idempotency_key_reused", message: "this Idempotency-Key was used for another request")
            }
            return .accepted(entry.answer, repeated: true)
        }
        let target = jobId ?? JobCommand.newJobId(subject: grant.subject, idempotencyKey: idempotencyKey)
        if jobId != nil {
            guard let state = store.read(target, { $0.state }) else {
                return .refused(status: 404, code: "job_not_found", message: "no job \(target.prefix(130)) is known to this bridge")
            }
            if let why = kind.refusal(in: state) { return .refused(status: 409, code: "invalid_state", message: why) }
        }
        let command = JobCommand(
            id: JobCommand.commandId(subject: grant.subject, idempotencyKey: idempotencyKey, kind: kind, jobId: jobId), kind: kind, jobId: target,
            requestedAt: now, requestedBy: grant.subject.map { String(String.UnicodeScalarView($0.unicodeScalars.prefix(256))) },
            idempotencyKey: idempotencyKey, data: data)
        let record = command.json
        let verdict = validator.validate(record)
        guard verdict.isValid else {
            // Only the request's own part can be wrong: the rest is the bridge's, and tests keep it valid.
            let detail = verdict.errors.prefix(3).map { "\($0.instanceLocation.replacingOccurrences(of: "/data", with: "", options: .anchored)): \($0.message)" }
            return .refused(status: 400, code: "invalid_body", message: "the body does not match the \(kind.rawValue) schema: " + detail.joined(separator: "; "))
        }
        guard let producer else {
            return .refused(status: 503, code: "commands_unavailable", message: "this bridge relays no commands")
        }
        guard inFlight.add(1, ordering: .relaxed).newValue <= Self.maxInFlight else {
            inFlight.subtract(1, ordering: .relaxed)
            return .refused(status: 503, code: "commands_unavailable", message: "too many commands in flight; try again (with the same Idempotency-Key)")
        }
        defer { inFlight.subtract(1, ordering: .relaxed) }
        let value = Array(record.serialized().utf8)
        // The producer gives up on a record after its `message.timeout.ms` (the runtime sets 5 s for commands), so a
        // request is answered within that even while Kafka is away.
        let published: Bool
        do {
            try await producer.send(
                topic: topic, key: Array(target.utf8), value: value,
                headers: [
                    KafkaHeader(name: "content-type", value: Array("application/json".utf8)), KafkaHeader(name: "traceparent", value: Array(traceparent.utf8)),
                ])
            published = true
        } catch {
            logger.warning("command not published", metadata: ["type": "\(kind.rawValue)", "error": "\(error)"])
            published = false
        }
        guard published else {
            return .refused(status: 503, code: "commands_unavailable", message: "Kafka did not acknowledge the command; try again (with the same Idempotency-Key)")
        }
        let answer = AcceptedCommand(id: command.id, kind: kind, jobId: target)
        if let rememberedKey { remembered.remember(rememberedKey, fingerprint: fingerprint, answer: answer, now: now) }
        logger.info(
            "command published", metadata: ["type": "\(kind.rawValue)", "job_id": "\(target)", "command_id": "\(command.id)", "traceparent": "\(traceparent)"])
        return .accepted(answer, repeated: false)
    }
}

/// What a request was answered with: the published command's id, type and job.
public struct AcceptedCommand: Sendable, Equatable {
    public let id: String
    public let kind: JobCommandKind
    public let jobId: String
}

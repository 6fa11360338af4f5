import Crypto
import Foundation
import JSONSchema
import ProgressContract

/// The commands the bridge relays to the progress monitor (the command topic's `type`).
public enum JobCommandKind: String, Sendable, CaseIterable {
    case create = "job.create"
    case pause = "job.pause"
    case resume = "job.resume"
    case cancel = "job.cancel"

    /// The REST path segment of a control command (`POST /api/v1/bulk-jobs/{id}/pause`); nil for create.
    public var action: String? {
        switch self {
        case .create: nil
        case .pause: "pause"
        case .resume: "resume"
        case .cancel: "cancel"
        }
    }

    /// Why a job in `state` cannot take this command, or nil when it can: exactly the moves the contract's state
    /// machine allows the monitor to make next (pause: running → pausing; resume: pausing | paused → running;
    /// cancel: pending | running | pausing | paused → canceling), so a 202 never asks for an event the bridge would
    /// dead-letter. The bridge only relays: the job's state changes when its events say so. A job whose state is
    /// not known yet (no state event) can take any control command.
    public func refusal(in state: JobState?) -> String? {
        guard let state else { return nil }
        if state.isTerminal { return "the job is \(state.rawValue) already" }
        switch self {
        case .create: return nil
        case .pause: return state == .running ? nil : "only a running job can be paused; it is \(state.rawValue)"
        case .resume: return [.paused, .pausing].contains(state) ? nil : "only a paused or pausing job can be resumed; it is \(state.rawValue)"
        case .cancel:
            switch state {
            case .canceling: return "the job is being canceled already"
            case .completing: return "the job is completing; it can no longer be canceled"
            default: return nil
            }
        }
    }
}

/// One command as published to the command topic: the contract of `schemas/commands/command.schema.json`.
public struct JobCommand: Sendable, Equatable {
    public let id: String
    public let kind: JobCommandKind
    public let jobId: String
    public let requestedAt: Int64
    public let requestedBy: String?
    public let idempotencyKey: String?
    public let data: JSONValue

    /// The record's value, keys sorted.
    public var json: JSONValue {
        .object([
            "schema_version": .number(JSONNumber(Int64(1))), "command_id": .string(id), "type": .string(kind.rawValue), "job_id": .string(jobId),
            "requested_at": .string(RFC3339.format(milliseconds: requestedAt)), "requested_by": requestedBy.map(JSONValue.string) ?? .null,
            "idempotency_key": idempotencyKey.map(JSONValue.string) ?? .null, "data": data,
        ])
    }

    /// A command's id: random, or — with an Idempotency-Key — derived from who asked, the key, the command and its
    /// job, so that a retry through another replica publishes the same id (consumers drop ids they have acted on).
    public static func commandId(subject: String?, idempotencyKey: String?, kind: JobCommandKind, jobId: String?) -> String {
        "cmd_" + hex(digest(subject: subject, idempotencyKey: idempotencyKey, parts: [kind.rawValue, jobId ?? ""]).prefix(16))
    }

    /// The id of a job to create: random, or derived like the command id, so that a retried create names the same job.
    public static func newJobId(subject: String?, idempotencyKey: String?) -> String {
        "job_" + hex(digest(subject: subject, idempotencyKey: idempotencyKey, parts: ["job.create/job_id"]).prefix(13))
    }

    private static func digest(subject: String?, idempotencyKey: String?, parts: [String]) -> [UInt8] {
        guard let idempotencyKey else {
            var random = SystemRandomNumberGenerator()
            return (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &random) }
        }
        // Length-prefixed, so that no two different inputs concatenate alike.
        var input: [UInt8] = []
        for field in [subject ?? "", idempotencyKey] + parts {
            let bytes = Array(field.utf8)
            input += withUnsafeBytes(of: UInt32(bytes.count).bigEndian, Array.init) + bytes
        }
        return Array(SHA256.hash(data: input))
    }

    private static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}

/// An `Idempotency-Key` header as the bridge accepts it: 1–128 printable ASCII characters.
public enum IdempotencyKey {
    public static func isValid(_ key: String) -> Bool {
        let bytes = Array(key.utf8)
        return !bytes.isEmpty && bytes.count <= 128 && bytes.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }
    }
}

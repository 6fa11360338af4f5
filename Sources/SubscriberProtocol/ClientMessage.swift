import JSONSchema

/// A message a subscriber sends over its WebSocket (contract §3): `ping`, `resume` or `command`.
public enum ClientMessage: Sendable, Equatable {
    /// Answered with `pong`, echoing `id` (a string or number of bounded size).
    case ping(id: JSONValue?)
    /// Answered with the messages after `lastSeq`, or a fresh snapshot.
    case resume(lastSeq: Int64)
    /// A job command for the connection's job (`pause`, `resume`, `cancel`), relayed as over REST; answered with
    /// `command.accepted` or an `error`, echoing `id`. `data` is the command's body (`{"reason"}` or `{}`).
    case command(action: String, data: JSONValue, idempotencyKey: String?, id: JSONValue?)

    /// The commands a connected dashboard may send (creating a job is REST's).
    public static let commandActions: Set<String> = ["pause", "resume", "cancel"]

    /// The largest `ping` id echoed back, in bytes of its JSON: a client must not make the bridge hold
    /// large copies of its own input.
    public static let maxPingIdBytes = 128

    /// Why a client message cannot be served: an `error` frame's code and message.
    public struct Refusal: Error, Sendable, Equatable {
        public let code: String
        public let message: String
    }

    /// Parses one text frame; at most `maxBytes` of JSON, 8 levels deep.
    public static func parse(_ text: String, maxBytes: Int) -> Result<ClientMessage, Refusal> {
        guard let value = try? JSONParser(limits: .init(maxDepth: 8, maxBytes: maxBytes)).parse(text),
            let type = value["type"]?.stringValue
        else {
            return .failure(Refusal(code: "invalid_message", message: "expected a JSON object with a string \"type\""))
        }
        switch type {
        case "ping":
            guard let id = value["id"] else { return .success(.ping(id: nil)) }
            let scalar: Bool
            switch id {
            case .string, .number, .null: scalar = true
            default: scalar = false
            }
            guard scalar, id.serialized().utf8.count <= maxPingIdBytes else {
                return .failure(
                    Refusal(code: "invalid_message", message: "ping id must be a string or number of at most \(maxPingIdBytes) bytes"))
            }
            return .success(.ping(id: id))
        case "resume":
            guard let lastSeq = value["last_seq"]?.int64Value, lastSeq >= 0, lastSeq <= maxSequenceNumber else {
                return .failure(Refusal(code: "invalid_message", message: "resume needs an integer last_seq from 0 to \(maxSequenceNumber)"))
            }
            return .success(.resume(lastSeq: lastSeq))
        case "command":
            guard let action = value["command"]?.stringValue, commandActions.contains(action) else {
                return .failure(Refusal(code: "invalid_message", message: "command must be one of pause, resume, cancel"))
            }
            let id = value["id"]
            if let id {
                let scalar: Bool
                switch id {
                case .string, .number, .null: scalar = true
                default: scalar = false
                }
                guard scalar, id.serialized().utf8.count <= maxPingIdBytes else {
                    return .failure(Refusal(code: "invalid_message", message: "command id must be a string or number of at most \(maxPingIdBytes) bytes"))
                }
            }
            var key: String?
            if let given = value["idempotency_key"] {
                guard case .string(let text) = given else {
                    return .failure(Refusal(code: "invalid_message", message: "idempotency_key must be a string"))
                }
                key = text
            }
            var data: JSONObject = [:]
            if let reason = value["reason"] { data["reason"] = reason }
            return .success(.command(action: action, data: .object(data), idempotencyKey: key, id: id))
        default:
            return .failure(Refusal(code: "unknown_message_type", message: "unknown message type \"\(type.prefix(64))\"; use ping, resume or command"))
        }
    }
}

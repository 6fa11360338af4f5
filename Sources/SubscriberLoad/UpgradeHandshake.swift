import Crypto
import Foundation

/// The client's side of the WebSocket opening handshake (RFC 6455 §4.1), for the socket engine: the upgrade
/// request, and the server's response read and checked — `101`, `Upgrade: websocket`, `Connection: Upgrade` and the
/// `Sec-WebSocket-Accept` that proves the server read this request's key.
struct UpgradeHandshake: Sendable {
    /// The request's `Sec-WebSocket-Key`: 16 random bytes, base64.
    let key: String

    /// The most a response's status line and headers may take (a server that sends more is not one this client talks to).
    static let maxResponseHeadBytes = 16_384

    /// The GUID RFC 6455 appends to the key.
    private static let acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    init(key: String) {
        self.key = key
    }

    /// A handshake with a fresh random key.
    init() {
        var generator = SystemRandomNumberGenerator()
        key = Data((0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }).base64EncodedString()
    }

    /// The `Sec-WebSocket-Accept` a server must answer `key` with: base64 of the SHA-1 of the key and the GUID.
    static func accept(for key: String) -> String {
        Data(Insecure.SHA1.hash(data: Data((key + acceptGUID).utf8))).base64EncodedString()
    }

    /// The upgrade request for `requestURI` on `host` (the `Host` header's value).
    func request(host: String, requestURI: String) -> [UInt8] {
        Array(
            ("GET \(requestURI) HTTP/1.1\r\nHost: \(host)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8)
    }

    /// What the bytes read so far say.
    enum Response: Equatable {
        /// The response's head has not fully arrived.
        case incomplete
        /// Upgraded: the WebSocket's bytes start after `headLength` bytes.
        case accepted(headLength: Int)
        /// The server answered with this status instead of 101.
        case refused(status: Int)
        /// Not an acceptable answer to this request; why.
        case invalid(String)
    }

    /// Reads the response from the start of `bytes` (everything the connection read so far).
    func response(_ bytes: some RandomAccessCollection<UInt8>) -> Response {
        let bytes = Array(bytes.prefix(Self.maxResponseHeadBytes + 4))
        guard let end = Self.headEnd(in: bytes, from: 0) else {
            return bytes.count > Self.maxResponseHeadBytes ? .invalid("response head over \(Self.maxResponseHeadBytes) bytes") : .incomplete
        }
        let lines = String(decoding: bytes[..<end], as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.first ?? ""
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0] == "HTTP/1.1", parts[1].count == 3, let status = Int(parts[1]) else {
            return .invalid("not an HTTP/1.1 status line")
        }
        guard status == 101 else { return .refused(status: status) }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { return .invalid("a header line without a colon") }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[name] = headers[name].map { "\($0), \(value)" } ?? value
        }
        guard headers["upgrade"]?.lowercased() == "websocket" else { return .invalid("no Upgrade: websocket") }
        guard let connection = headers["connection"],
            connection.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces).lowercased() == "upgrade" })
        else { return .invalid("no Connection: Upgrade") }
        guard headers["sec-websocket-accept"] == Self.accept(for: key) else { return .invalid("a wrong Sec-WebSocket-Accept") }
        // The request offered neither: a server that picks one anyway would send frames this client cannot read (§4.1).
        guard headers["sec-websocket-extensions"] == nil else { return .invalid("an extension that was not offered") }
        guard headers["sec-websocket-protocol"] == nil else { return .invalid("a subprotocol that was not offered") }
        return .accepted(headLength: end + 4)
    }

    /// Where the head's closing blank line starts (the index of its `\r\n\r\n`), looking from `start`, if it came.
    static func headEnd(in bytes: [UInt8], from start: Int) -> Int? {
        guard bytes.count >= 4, start >= 0, start <= bytes.count - 4 else { return nil }
        for index in start...(bytes.count - 4)
        where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
            return index
        }
        return nil
    }
}

import Foundation
import Testing

@testable import SubscriberLoad

/// The socket engine's side of the WebSocket opening handshake (RFC 6455 §4.1).
@Suite("The WebSocket upgrade, client side")
struct UpgradeHandshakeTests {
    /// RFC 6455 §1.3's example key.
    let handshake = UpgradeHandshake(key: "dGhlIHNhbXBsZSBub25jZQ==")

    func response(_ head: String, then rest: [UInt8] = []) -> UpgradeHandshake.Response {
        handshake.response(Array(head.utf8) + rest)
    }

    static let accepted = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"

    @Test("the accept is RFC 6455's example; a fresh key is 16 random bytes in base64")
    func acceptAndKey() {
        #expect(UpgradeHandshake.accept(for: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        let keys = (0..<4).map { _ in UpgradeHandshake().key }
        #expect(keys.allSatisfy { $0.count == 24 && $0.hasSuffix("==") })
        #expect(Set(keys).count == 4)
    }

    @Test("the request asks for the upgrade with the key, on the given target and host")
    func request() {
        let request = String(decoding: handshake.request(host: "bridge:8765", requestURI: "/?job_id=j&connection_id=c"), as: UTF8.self)
        #expect(request.hasPrefix("GET /?job_id=j&connection_id=c HTTP/1.1\r\n"))
        #expect(request.hasSuffix("\r\n\r\n"))
        for line in ["Host: bridge:8765", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"] {
            #expect(request.contains("\r\n\(line)\r\n"), "\(line)")
        }
    }

    @Test("a 101 with the right accept is accepted; the bytes after its head are the WebSocket's")
    func acceptedResponse() {
        #expect(response(Self.accepted) == .accepted(headLength: Self.accepted.utf8.count))
        #expect(response(Self.accepted, then: [0x81, 0x02, 0x7B, 0x7D]) == .accepted(headLength: Self.accepted.utf8.count))
        // Header names and the Upgrade value in any case; Connection as a list.
        let mixed = "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, upgrade\r\nsec-websocket-accept:s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        #expect(response(mixed) == .accepted(headLength: mixed.utf8.count))
    }

    @Test("until the blank line the response is incomplete, at every split")
    func incomplete() {
        let bytes = Array(Self.accepted.utf8)
        for end in 0..<bytes.count {
            #expect(handshake.response(bytes[..<end]) == .incomplete, "cut at \(end)")
        }
    }

    @Test("another status is a refusal with that status")
    func refused() {
        #expect(response("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n") == .refused(status: 403))
        #expect(response("HTTP/1.1 503 Service Unavailable\r\n\r\n") == .refused(status: 503))
    }

    @Test("a wrong accept, a missing Upgrade or Connection, a bad status line or an endless head is invalid")
    func invalid() {
        func isInvalid(_ head: String) -> Bool {
            if case .invalid = response(head) { return true }
            return false
        }
        #expect(isInvalid(Self.accepted.replacingOccurrences(of: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", with: "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")))
        #expect(isInvalid(Self.accepted.replacingOccurrences(of: "Upgrade: websocket\r\n", with: "")))
        #expect(isInvalid(Self.accepted.replacingOccurrences(of: "Connection: Upgrade\r\n", with: "Connection: close\r\n")))
        #expect(isInvalid("SSH-2.0-OpenSSH\r\n\r\n"))
        #expect(isInvalid("HTTP/1.1 1010 Nope\r\n\r\n"))
        #expect(isInvalid(Self.accepted.replacingOccurrences(of: "HTTP/1.1", with: "HTTP/1.0")))
        // Neither was offered (§4.1: the client must fail the connection).
        #expect(isInvalid(Self.accepted.replacingOccurrences(of: "\r\n\r\n", with: "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")))
        #expect(isInvalid(Self.accepted.replacingOccurrences(of: "\r\n\r\n", with: "\r\nSec-WebSocket-Protocol: chat\r\n\r\n")))
        #expect(isInvalid("HTTP/1.1 101 Switching\r\nno colon here\r\n\r\n"))
        // A head that never ends is refused once it passes the bound, not read for ever.
        let endless = "HTTP/1.1 101 Switching Protocols\r\nX-Filler: " + String(repeating: "x", count: UpgradeHandshake.maxResponseHeadBytes)
        #expect(isInvalid(endless))
        #expect(response(String(endless.prefix(UpgradeHandshake.maxResponseHeadBytes - 10))) == .incomplete)
    }
}

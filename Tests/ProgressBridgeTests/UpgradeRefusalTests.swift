import Hummingbird
import HummingbirdTesting
import JSONSchema
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Testing

@testable import ProgressBridge

@Suite("Refused WebSocket upgrades: HTTP status and JSON body before any WebSocket")
struct UpgradeRefusalTests {
    /// The headers of a WebSocket opening handshake (RFC 6455 §4.1).
    static let upgradeHeaders: HTTPFields = [
        .connection: "Upgrade", .upgrade: "websocket", .secWebSocketVersion: "13", .secWebSocketKey: "dGhlIHNhbXBsZSBub25jZQ==",
    ]

    /// Sends one request to a fresh application (a refused upgrade closes its connection).
    func response(_ authenticator: Authenticator, _ uri: String, headers: HTTPFields = upgradeHeaders) async throws -> TestResponse {
        let metrics = BridgeMetrics()
        let app = buildApplication(
            store: JobStore(metrics: metrics), metrics: metrics, settings: .init(), authenticator: authenticator,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: Logger(label: "test"))
        return try await app.test(.live) { client in try await client.execute(uri: uri, method: .get, headers: headers) }
    }

    func errorCode(_ body: ByteBuffer) throws -> String? {
        try JSONParser().parse(Array(body.readableBytesView))["error"]?["code"]?.stringValue
    }

    @Test func refusalsCarryTheirStatusAndAJSONBody() async throws {
        var settings = AuthSettings()
        settings.jwtSecret = String(repeating: "s", count: 32)
        let secured = try await Authenticator(settings: settings)

        let missingToken = try await response(secured, "/?job_id=job_r1")
        #expect(missingToken.status == .unauthorized)
        #expect(missingToken.headers[.wwwAuthenticate] == "Bearer")
        #expect(missingToken.headers[.contentType] == "application/json; charset=utf-8")
        #expect(try errorCode(missingToken.body) == "unauthorized")

        let forged = try await response(secured, "/ws?job_id=job_r1&token=a.b.c")
        #expect(forged.status == .unauthorized)
        #expect(try errorCode(forged.body) == "unauthorized")

        let noJob = try await response(secured, "/?connection_id=c1")
        #expect(noJob.status == .badRequest)
        #expect(try errorCode(noJob.body) == "invalid_subscription")

        // Plain HTTP on the same port passes through the writer untouched.
        let rest = try await response(secured, "/api/v1/bulk-jobs/job_r1", headers: [:])
        #expect(rest.status == .unauthorized)
        #expect(try errorCode(rest.body) == "unauthorized")
    }

    @Test func aRefusedOriginIsForbidden() async throws {
        var headers = Self.upgradeHeaders
        headers[.origin] = "https://evil.example.com"
        let refused = try await response(Authenticator(allowedOrigins: ["https://dash.example.com"]), "/?job_id=job_r2", headers: headers)
        #expect(refused.status == .forbidden)
        #expect(try errorCode(refused.body) == "forbidden")
        #expect(refused.headers[.wwwAuthenticate] == nil)
    }

    @Test func theWriterReplacesOnlyARecordedRefusal() throws {
        let refusals = UpgradeRefusals()
        let refused = EmbeddedChannel()
        refusals.hold(.badRequest(code: "invalid_subscription", message: "job_id is required"), for: refused)
        try refused.pipeline.syncOperations.addHandler(RefusedUpgradeResponseWriter(refusals: refusals))
        #expect(refusals.count == 0, "taken when the writer joins the connection")
        try refused.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .badRequest, headerFields: [.contentLength: "0"])))
        try refused.writeOutbound(HTTPResponsePart.end(nil))
        guard case .head(let head) = try refused.readOutbound(as: HTTPResponsePart.self),
            case .body(let body) = try refused.readOutbound(as: HTTPResponsePart.self),
            case .end = try refused.readOutbound(as: HTTPResponsePart.self)
        else { Issue.record("expected head, body, end"); return }
        #expect(head.status == .badRequest)
        #expect(head.headerFields[.contentLength] == String(body.readableBytes))
        #expect(head.headerFields[.connection] == "close")
        #expect(try errorCode(body) == "invalid_subscription")

        // A connection without a refusal passes its responses through untouched.
        let plain = EmbeddedChannel(handler: RefusedUpgradeResponseWriter(refusals: refusals))
        let ok = HTTPResponse(status: .ok, headerFields: [.contentLength: "2"])
        try plain.writeOutbound(HTTPResponsePart.head(ok))
        try plain.writeOutbound(HTTPResponsePart.body(ByteBuffer(string: "{}")))
        #expect(try plain.readOutbound(as: HTTPResponsePart.self) == .head(ok))
        #expect(try plain.readOutbound(as: HTTPResponsePart.self) == .body(ByteBuffer(string: "{}")))
    }

    @Test func aRefusalNeverOutlivesItsConnection() throws {
        let refusals = UpgradeRefusals()
        let channel = EmbeddedChannel()
        refusals.hold(.badRequest(code: "invalid_subscription", message: "x"), for: channel)
        #expect(refusals.count == 1)
        _ = try channel.finish()
        #expect(refusals.count == 0)
    }
}

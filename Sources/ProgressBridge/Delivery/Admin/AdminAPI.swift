import Hummingbird
import JSONSchema

/// The admin port: `/metrics` (Prometheus text), `/healthz` (process alive), `/readyz` (serving).
struct AdminAPI<Context: RequestContext> {
    let metrics: BridgeMetrics
    let readiness: Readiness

    func register(on router: Router<Context>) {
        router.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
        }
        router.get("healthz") { _, _ in JSONResponse.ok(.object(["status": .string("ok")])) }
        router.get("readyz") { _, _ in
            let checks = readiness.checks
            let ready = checks.allSatisfy(\.ok)
            var body: JSONObject = ["status": .string(ready ? "ready" : "not_ready")]
            body["checks"] = .object(JSONObject(
                Dictionary(uniqueKeysWithValues: checks.map { check in
                    (check.name, JSONValue.object(["ok": .bool(check.ok), "detail": check.detail.map(JSONValue.string) ?? .null]))
                })))
            return JSONResponse.ok(.object(body), status: ready ? .ok : .serviceUnavailable)
        }
    }
}

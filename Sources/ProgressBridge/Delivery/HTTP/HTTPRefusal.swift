import Hummingbird

/// A refused request: a status and a JSON body `{"error":{"code","message"}}`.
///
/// One type for REST refusals and refused WebSocket upgrades, so both say the same thing the same way.
struct HTTPRefusal: Sendable, Equatable {
    let status: HTTPResponse.Status
    let code: String
    /// Safe to show: never echoes a token, never says whether a job exists.
    let message: String
    var headers: HTTPFields = [:]

    /// 401 (with `WWW-Authenticate: Bearer`) for a missing or invalid token, 403 for one that does not grant the job.
    static func auth(_ failure: AuthFailure) -> HTTPRefusal {
        switch failure.kind {
        case .unauthorized:
            HTTPRefusal(status: .unauthorized, code: "unauthorized", message: failure.message, headers: [.wwwAuthenticate: "Bearer"])
        case .forbidden:
            HTTPRefusal(status: .forbidden, code: "forbidden", message: failure.message)
        }
    }

    /// 400 for a request the bridge cannot act on.
    static func badRequest(code: String, message: String) -> HTTPRefusal {
        HTTPRefusal(status: .badRequest, code: code, message: message)
    }

    var body: ByteBuffer { ByteBuffer(string: JSONResponse.errorBody(code: code, message: message).serialized()) }

    /// The whole response, for the REST router.
    var response: Response {
        var response = JSONResponse.error(status, code: code, message: message)
        response.headers.append(contentsOf: headers)
        return response
    }
}

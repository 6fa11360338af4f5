import Hummingbird
import JSONSchema

/// JSON bodies for the REST and admin APIs.
enum JSONResponse {
    static func ok(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: value.serialized())))
    }

    /// `{"error":{"code","message"}}`.
    static func error(_ status: HTTPResponse.Status, code: String, message: String) -> Response {
        ok(errorBody(code: code, message: message), status: status)
    }

    static func errorBody(code: String, message: String) -> JSONValue {
        .object(["error": .object(["code": .string(code), "message": .string(message)])])
    }
}

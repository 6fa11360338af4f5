import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The dashboard's static files (`--web-root`): read once at start-up, served from memory. Only the directory's own
/// regular files with plain names and a web type are taken (no subdirectories, no dot files, no notes such as a
/// README), so a request path can never reach anything else on disk, and the bytes served do not change under a
/// running bridge.
public struct WebAssets: Sendable {
    /// One file: its bytes, media type and entity tag.
    public struct Asset: Sendable {
        public let body: ByteBuffer
        public let contentType: String
        public let etag: String
    }

    /// Files by name.
    public let files: [String: Asset]

    /// No dashboard (the directory is missing): `/` answers 404 with a JSON error that says so.
    public static let none = WebAssets(files: [:])

    /// The file the page is: served at `/`.
    public static let indexName = "index.html"
    /// Files larger than this are skipped (a dashboard asset is tens of KiB).
    public static let maxFileBytes = 4 << 20
    /// Files taken from the directory at most.
    public static let maxFiles = 64

    init(files: [String: Asset]) {
        self.files = files
    }

    /// Reads the top-level files of `directory`; a missing directory gives `.none`, a file that cannot be read is
    /// an error (a half-served dashboard would be worse than none).
    public static func load(from directory: String) throws(StartupError) -> WebAssets {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else { return .none }
        let names: [String]
        do {
            names = try manager.contentsOfDirectory(atPath: directory).sorted()
        } catch {
            throw StartupError("cannot list --web-root \(directory): \(error.localizedDescription)")
        }
        var files: [String: Asset] = [:]
        for name in names where isPlainName(name) && contentType(of: name) != nil {
            let path = directory + "/" + name
            guard let attributes = try? manager.attributesOfItem(atPath: path), attributes[.type] as? FileAttributeType == .typeRegular else {
                continue
            }
            guard let data = manager.contents(atPath: path) else { throw StartupError("cannot read \(path)") }
            guard data.count <= maxFileBytes else { continue }
            guard files.count < maxFiles else { break }
            let digest = SHA256.hash(data: data).prefix(12).map { String(format: "%02x", $0) }.joined()
            files[name] = Asset(body: ByteBuffer(bytes: data), contentType: contentType(of: name) ?? "application/octet-stream", etag: "\"\(digest)\"")
        }
        return WebAssets(files: files)
    }

    /// Names a request may ask for: letters, digits, `.`, `_`, `-`, not starting with a dot, at most 128 bytes.
    static func isPlainName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= 128, bytes[0] != UInt8(ascii: ".") else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x5F || b == 0x2D
        }
    }

    /// The media type of a file the dashboard may serve; nil for anything else (not served).
    static func contentType(of name: String) -> String? {
        switch name.split(separator: ".").last.map({ $0.lowercased() }) {
        case "html": "text/html; charset=utf-8"
        case "js", "mjs": "text/javascript; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "json": "application/json"
        case "png": "image/png"
        case "ico": "image/x-icon"
        default: nil
        }
    }

    /// The page's Content-Security-Policy: its own scripts and styles only, WebSockets and REST to this origin (or
    /// any `ws:`/`wss:` for a bridge behind another host name), never framed.
    static let contentSecurityPolicy =
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; base-uri 'none'; frame-ancestors 'none'"

    /// The answer for `name`: the file (304 when `If-None-Match` names its tag), or a JSON 404.
    func response(for name: String, ifNoneMatch: String?) -> Response {
        guard let asset = files[name] else {
            let message =
                files.isEmpty
                ? "the dashboard is not installed here (no --web-root directory)" : "no such file: \(name.prefix(128))"
            return JSONResponse.error(.notFound, code: "not_found", message: message)
        }
        var headers: HTTPFields = [
            .eTag: asset.etag,
            // Revalidated on every load (cheap: a 304), so a new version of the bridge is picked up at once.
            .cacheControl: "no-cache",
            .xContentTypeOptions: "nosniff",
            .referrerPolicy: "no-referrer",
        ]
        if let ifNoneMatch, ifNoneMatch.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == asset.etag }) {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentType] = asset.contentType
        if asset.contentType.hasPrefix("text/html") {
            headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
            headers[.xFrameOptions] = "DENY"
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: asset.body))
    }
}

/// `GET /` (the dashboard page) and `GET /static/{name}` (its files). A WebSocket upgrade on `/` never gets here:
/// upgrades go to the subscription router first.
struct DashboardRoutes<Context: RequestContext> {
    let assets: WebAssets

    func register(on router: Router<Context>) {
        router.get("/") { request, _ in
            assets.response(for: WebAssets.indexName, ifNoneMatch: request.headers[.ifNoneMatch])
        }
        router.get("/static/:name") { request, context in
            let name = context.parameters.get("name") ?? ""
            guard WebAssets.isPlainName(name) else {
                return JSONResponse.error(.notFound, code: "not_found", message: "no such file")
            }
            return assets.response(for: name, ifNoneMatch: request.headers[.ifNoneMatch])
        }
    }
}

extension HTTPField.Name {
    static let contentSecurityPolicy = HTTPField.Name("Content-Security-Policy")!
    static let xContentTypeOptions = HTTPField.Name("X-Content-Type-Options")!
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
    static let xFrameOptions = HTTPField.Name("X-Frame-Options")!
}

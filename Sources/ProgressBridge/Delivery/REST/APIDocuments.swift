import Foundation
import Hummingbird
import JSONSchema
import NIOCore

/// The API documents (`--api-docs`): OpenAPI 3.1 for the REST API and AsyncAPI 3 for the Kafka topics and the
/// WebSocket channel, served at `/api/v1/openapi.json` and `/api/v1/asyncapi.json`. In the repository they reference
/// the contract's schemas (`../schemas/…`) instead of copying them; served, they are self-contained: every schema
/// they reach is bundled under `components/schemas` and every reference points there, so a tool needs nothing else.
public struct APIDocuments: Sendable {
    /// Served bytes by file name (`openapi.json`, `asyncapi.json`).
    let documents: [String: ByteBuffer]

    /// No documents (the directory is missing).
    public static let none = APIDocuments(documents: [:])

    /// The documents served, by the name in their URL.
    public static let names = ["openapi.json", "asyncapi.json"]

    /// Reads and bundles the documents of `directory`; a missing directory serves none. A reference to a schema that
    /// is not in `schemasPath` stops the bridge: a document that points nowhere would mislead its readers.
    public static func load(from directory: String, schemasPath: String) throws(StartupError) -> APIDocuments {
        guard FileManager.default.fileExists(atPath: directory) else { return .none }
        let schemas = try SchemaFiles(root: schemasPath)
        var documents: [String: ByteBuffer] = [:]
        for name in names {
            let path = directory + "/" + name
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            let document: JSONValue
            do {
                document = try JSONParser(limits: .init(maxDepth: 128, maxBytes: 16 << 20)).parse(data)
            } catch {
                throw StartupError("\(path) is not valid JSON: \(error)")
            }
            let bundled = try Bundler(schemas: schemas, source: path).bundle(document)
            documents[name] = ByteBuffer(string: bundled.serialized())
        }
        return APIDocuments(documents: documents)
    }

    func response(for name: String) -> Response {
        guard let body = documents[name] else {
            return JSONResponse.error(.notFound, code: "not_found", message: "no \(name) here (no --api-docs directory)")
        }
        return Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-cache"], body: .init(byteBuffer: body))
    }
}

/// The contract's schema files, by their `$id`.
struct SchemaFiles {
    /// Documents by `$id` (without fragment), and each one's path under the root (`outbound/job-progress.schema.json`).
    let byId: [String: (relative: String, document: JSONValue)]

    init(root: String) throws(StartupError) {
        let base = URL(fileURLWithPath: root, isDirectory: true).standardizedFileURL
        guard let enumerator = FileManager.default.enumerator(atPath: base.path) else { throw StartupError("cannot read --schemas \(root)") }
        var byId: [String: (String, JSONValue)] = [:]
        for case let relative as String in enumerator where relative.hasSuffix(".json") {
            guard let data = FileManager.default.contents(atPath: base.path + "/" + relative),
                let document = try? JSONParser(limits: .init(maxDepth: 512, maxBytes: 64 << 20)).parse(data),
                let id = document["$id"]?.stringValue
            else { continue }
            byId[id] = (relative, document)
        }
        self.byId = byId
    }

    func relativePath(_ relative: String) -> String? {
        byId.first { $0.value.relative == relative }?.key
    }
}

/// Rewrites an API document's references to `schemas/` files into references to bundled copies.
private struct Bundler {
    let schemas: SchemaFiles
    let source: String

    /// The component name of a schema file: its path without `.schema.json`, slashes as dots (`outbound.job-progress`).
    static func componentName(_ relative: String) -> String {
        relative.replacingOccurrences(of: ".schema.json", with: "").replacingOccurrences(of: ".json", with: "").replacingOccurrences(of: "/", with: ".")
    }

    func bundle(_ document: JSONValue) throws(StartupError) -> JSONValue {
        var needed: [String] = []  // schema ids, in the order first reached
        // The document's own references are relative to the document: `../schemas/<relative>#<pointer>`.
        let rewritten = try rewrite(document, needed: &needed) { reference throws(StartupError) -> String in
            let (file, fragment) = Self.split(reference)
            guard file.hasPrefix("../schemas/"), let id = schemas.relativePath(String(file.dropFirst("../schemas/".count))) else {
                throw StartupError("\(source): $ref \(reference) names no file of the schemas directory")
            }
            return id + (fragment.map { "#" + $0 } ?? "")
        }
        // Then every schema reached, with its own references (relative to its `$id`) rewritten the same way.
        var bundled: [String: JSONValue] = [:]
        var index = 0
        while index < needed.count {
            let id = needed[index]
            index += 1
            guard let (relative, schema) = schemas.byId[id] else { throw StartupError("\(source): no schema \(id)") }
            var copy = try rewrite(schema, needed: &needed) { reference throws(StartupError) -> String in
                guard let resolved = URL(string: reference, relativeTo: URL(string: id))?.absoluteString else {
                    throw StartupError("\(relative): $ref \(reference) cannot be resolved")
                }
                let (file, fragment) = Self.split(resolved)
                guard schemas.byId[file] != nil else { throw StartupError("\(relative): $ref \(reference) names no schema") }
                return file + (fragment.map { "#" + $0 } ?? "")
            }
            // Its base is now the document: without `$id`, its references (rewritten to document pointers) resolve there.
            if case .object(var members) = copy {
                members["$id"] = nil
                members["$schema"] = nil
                copy = .object(members)
            }
            bundled[Self.componentName(relative)] = copy
        }
        guard case .object(var top) = rewritten else { throw StartupError("\(source) is not a JSON object") }
        var components: JSONObject = [:]
        if case .object(let existing) = top["components"] ?? .object([:]) { components = existing }
        var schemasObject: JSONObject = [:]
        if case .object(let existing) = components["schemas"] ?? .object([:]) { schemasObject = existing }
        for name in bundled.keys.sorted() { schemasObject[name] = bundled[name] }
        components["schemas"] = .object(schemasObject)
        top["components"] = .object(components)
        return .object(top)
    }

    /// Rewrites every `$ref` that is not a local pointer: `resolve` gives the target's schema id and fragment, which
    /// becomes `#/components/schemas/<name><fragment>`; a local pointer (`#/…`) inside a bundled schema is made
    /// relative to the schema's new place by the caller passing it through `resolve` as well.
    private func rewrite(
        _ value: JSONValue, needed: inout [String], resolve: (String) throws(StartupError) -> String
    ) throws(StartupError) -> JSONValue {
        switch value {
        case .array(let items):
            var out: [JSONValue] = []
            for item in items { out.append(try rewrite(item, needed: &needed, resolve: resolve)) }
            return .array(out)
        case .object(let members):
            var out: JSONObject = [:]
            for (key, member) in members {
                if key == "$ref", case .string(let reference) = member, !reference.hasPrefix("#/components/"), !reference.hasPrefix("#/channels/"),
                    !reference.hasPrefix("#/servers/"), !reference.hasPrefix("#/operations/")
                {
                    let target = try resolve(reference)
                    let (file, fragment) = Self.split(target)
                    if let fragment, !fragment.hasPrefix("/") {
                        throw StartupError("\(source): $ref \(reference) uses an anchor; bundling takes JSON Pointer fragments only")
                    }
                    if !needed.contains(file) { needed.append(file) }
                    guard let relative = schemas.byId[file]?.relative else { throw StartupError("\(source): no schema \(file)") }
                    out[key] = .string("#/components/schemas/" + Self.componentName(relative) + (fragment ?? ""))
                } else {
                    out[key] = try rewrite(member, needed: &needed, resolve: resolve)
                }
            }
            return .object(out)
        default:
            return value
        }
    }

    /// `file#fragment` → (file, fragment without `#`; nil when none or empty).
    static func split(_ reference: String) -> (String, String?) {
        guard let hash = reference.firstIndex(of: "#") else { return (reference, nil) }
        let fragment = String(reference[reference.index(after: hash)...])
        return (String(reference[..<hash]), fragment.isEmpty ? nil : fragment)
    }
}

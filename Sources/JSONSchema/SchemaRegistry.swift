#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A schema could not be registered or compiled.
public struct SchemaError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, naming the schema location.
    public let message: String

    /// Creates an error with a message.
    public init(_ message: String) { self.message = message }

    public var description: String { message }
}

/// Schema documents by URI, from which validators are compiled. Never fetches anything.
public struct SchemaRegistry: Sendable {
    /// A schema resource: a document or a subschema with its own `$id`.
    struct Resource: Sendable {
        let schema: JSONValue
    }

    private(set) var resources: [String: Resource] = [:]
    /// `base#name` → the anchored subschema and its canonical location (`base#/pointer`).
    private(set) var anchors: [String: (schema: JSONValue, location: String)] = [:]
    /// `$dynamicAnchor` name → resource base → the anchored subschema and its canonical location.
    private(set) var dynamicAnchors: [String: [String: (schema: JSONValue, location: String)]] = [:]

    /// Creates an empty registry.
    public init() {}

    /// Adds a schema document retrieved from `retrievalURI`; its `$id`, if any, names it too,
    /// and every embedded `$id` and `$anchor` becomes resolvable.
    /// Returns the document's base URI (its `$id` resolved against `retrievalURI`).
    @discardableResult
    public mutating func add(_ document: JSONValue, retrievalURI rawRetrievalURI: String) throws(SchemaError) -> String {
        let retrievalURI = URIReference.normalize(URIReference.splitFragment(rawRetrievalURI).base)
        let base: String
        if let id = document["$id"]?.stringValue {
            base = URIReference.splitFragment(URIReference.resolve(id, against: retrievalURI)).base
        } else {
            base = URIReference.splitFragment(retrievalURI).base
        }
        resources[URIReference.splitFragment(retrievalURI).base] = Resource(schema: document)
        index(document, base: base, pointer: "", isRoot: true)
        return base
    }

    /// Loads every `*.json` file below `directory` (recursively), retrievable as `uriPrefix` + relative path.
    public mutating func addDirectory(_ directory: String, uriPrefix: String? = nil) throws(SchemaError) {
        let root = URL(fileURLWithPath: directory, isDirectory: true).standardizedFileURL
        let prefix = uriPrefix ?? root.absoluteString
        let files: [String]
        do {
            files = try Self.jsonFiles(under: root.path)
        } catch {
            throw SchemaError("cannot read schema directory \(directory): \(error)")
        }
        if files.isEmpty { throw SchemaError("no *.json schema files in \(directory)") }
        for relative in files {
            let path = root.path + "/" + relative
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: path))
            } catch {
                throw SchemaError("cannot read schema file \(path): \(error)")
            }
            let document: JSONValue
            do {
                document = try JSONParser(limits: .init(maxDepth: 512, maxBytes: 64 << 20)).parse(data)
            } catch {
                throw SchemaError("schema file \(path) is not valid JSON: \(error)")
            }
            let slash = prefix.hasSuffix("/") ? "" : "/"
            try add(document, retrievalURI: prefix + slash + relative)
        }
    }

    static func jsonFiles(under directory: String) throws -> [String] {
        let manager = FileManager.default
        guard let enumerator = manager.enumerator(atPath: directory) else {
            throw SchemaError("not a directory")
        }
        var result: [String] = []
        while let next = enumerator.nextObject() as? String {
            if next.hasSuffix(".json") { result.append(next) }
        }
        return result.sorted()
    }

    private mutating func index(_ schema: JSONValue, base: String, pointer: String, isRoot: Bool) {
        guard case .object(let members) = schema else { return }
        var base = base
        var pointer = pointer
        if !isRoot, let id = members["$id"]?.stringValue {
            base = URIReference.splitFragment(URIReference.resolve(id, against: base)).base
            pointer = ""
        }
        if isRoot || members["$id"] != nil || resources[base] == nil {
            resources[base] = Resource(schema: schema)
        }
        let location = base + "#" + pointer
        if let anchor = members["$anchor"]?.stringValue { anchors[base + "#" + anchor] = (schema, location) }
        if let anchor = members["$dynamicAnchor"]?.stringValue {
            if anchors[base + "#" + anchor] == nil { anchors[base + "#" + anchor] = (schema, location) }
            dynamicAnchors[anchor, default: [:]][base] = (schema, location)
        }
        for (keyword, value) in members {
            let here = pointer + "/" + JSONPointer.escape(keyword)
            switch SchemaKeywords.childShape(of: keyword) {
            case .single: index(value, base: base, pointer: here, isRoot: false)
            case .array:
                for (i, item) in (value.arrayValue ?? []).enumerated() { index(item, base: base, pointer: here + "/\(i)", isRoot: false) }
            case .map:
                for (name, item) in value.objectValue ?? [:] { index(item, base: base, pointer: here + "/" + JSONPointer.escape(name), isRoot: false) }
            case .none: break
            }
        }
    }

    /// Finds the schema `uri` (absolute, with optional fragment) names: the schema, the base URI in
    /// effect there, and a canonical location that names it uniquely.
    func lookup(_ uri: String) -> (schema: JSONValue, base: String, location: String)? {
        let (base, fragment) = URIReference.splitFragment(uri)
        guard let fragment, !fragment.isEmpty else {
            return resources[base].map { ($0.schema, base, base + "#") }
        }
        if let tokens = JSONPointer.tokens(fromFragment: fragment) {
            guard var current = resources[base]?.schema else { return nil }
            var currentBase = base
            var pointer = ""
            for token in tokens {
                switch current {
                case .object(let members):
                    guard let next = members[token] else { return nil }
                    current = next
                case .array(let items):
                    guard let i = Int(token), items.indices.contains(i) else { return nil }
                    current = items[i]
                default: return nil
                }
                pointer += "/" + JSONPointer.escape(token)
                if let id = current["$id"]?.stringValue {
                    currentBase = URIReference.splitFragment(URIReference.resolve(id, against: currentBase)).base
                    pointer = ""
                }
            }
            return (current, currentBase, currentBase + "#" + pointer)
        }
        guard let anchored = anchors[base + "#" + fragment.removingPercentEncodingLossy()] else { return nil }
        let anchoredBase = URIReference.splitFragment(anchored.location).base
        return (anchored.schema, anchoredBase, anchored.location)
    }
}

/// Where subschemas sit under each applicator keyword.
enum SchemaKeywords {
    enum ChildShape { case single, array, map, none }

    static func childShape(of keyword: String) -> ChildShape {
        switch keyword {
        case "additionalProperties", "propertyNames", "items", "contains", "not", "if", "then", "else",
            "unevaluatedItems", "unevaluatedProperties", "contentSchema":
            return .single
        case "allOf", "anyOf", "oneOf", "prefixItems": return .array
        case "properties", "patternProperties", "dependentSchemas", "$defs", "definitions": return .map
        default: return .none
        }
    }
}

extension SchemaRegistry {
    /// A registry that already holds the draft 2020-12 meta-schemas (dialect and vocabularies),
    /// so schemas can `$ref` them and be checked against them.
    public static func withMetaSchemas() -> SchemaRegistry {
        var registry = SchemaRegistry()
        for (id, json) in MetaSchemas.documents {
            // The embedded documents are known-good JSON.
            try! registry.add(try! JSONParser(limits: .init(maxDepth: 256, maxBytes: 1 << 22)).parse(json), retrievalURI: id)
        }
        return registry
    }
}

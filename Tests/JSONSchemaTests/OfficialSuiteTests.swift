import Foundation
import Testing

@testable import JSONSchema

/// Runs JSON-Schema-Test-Suite (draft 2020-12, copied into `Tests/third_party` with its licence), with `remotes/`
/// served from disk as `http://localhost:1234/…`. Set `JSON_SCHEMA_TEST_SUITE` to use another copy.
enum OfficialSuite {
    static let root: URL = {
        if let path = ProcessInfo.processInfo.environment["JSON_SCHEMA_TEST_SUITE"] { return URL(fileURLWithPath: path) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("third_party/JSON-Schema-Test-Suite")
    }()

    /// Tests we knowingly fail, with the reason. Keep this short.
    static let knownFailures: [String: String] = [:]

    struct Case: Sendable, CustomStringConvertible {
        let file: String
        let group: String
        let test: String
        let schema: JSONValue
        let data: JSONValue
        let valid: Bool
        var description: String { "\(file) › \(group) › \(test)" }
    }

    static func cases(in directory: String) -> [Case] {
        let dir = root.appendingPathComponent("tests/draft2020-12").appendingPathComponent(directory)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path))?.filter { $0.hasSuffix(".json") }.sorted() ?? []
        var result: [Case] = []
        for file in files {
            let data = try! Data(contentsOf: dir.appendingPathComponent(file))
            let groups = try! JSONParser(limits: .init(maxDepth: 512, maxBytes: 1 << 24)).parse(data).arrayValue!
            for group in groups {
                for test in group["tests"]!.arrayValue! {
                    result.append(
                        Case(
                            file: (directory.isEmpty ? "" : directory + "/") + file, group: group["description"]!.stringValue!,
                            test: test["description"]!.stringValue!, schema: group["schema"]!, data: test["data"]!,
                            valid: test["valid"]!.boolValue!))
                }
            }
        }
        return result
    }

    static let remotes: SchemaRegistry = {
        var registry = SchemaRegistry.withMetaSchemas()
        let remotes = root.appendingPathComponent("remotes")
        let enumerator = FileManager.default.enumerator(atPath: remotes.path)!
        while let relative = enumerator.nextObject() as? String {
            guard relative.hasSuffix(".json") else { continue }
            let data = try! Data(contentsOf: remotes.appendingPathComponent(relative))
            let document = try! JSONParser(limits: .init(maxDepth: 512, maxBytes: 1 << 24)).parse(data)
            _ = try? registry.add(document, retrievalURI: "http://localhost:1234/" + relative)
        }
        return registry
    }()

    /// Validates one case; returns nil when the outcome matches, else what went wrong.
    static func run(_ c: Case, formatAssertion: Bool, onFlatPath: () -> Void = {}) -> String? {
        if ProcessInfo.processInfo.environment["SUITE_TRACE"] != nil { FileHandle.standardError.write(Data("RUN \(c)\n".utf8)) }
        var registry = remotes
        let uri = "https://test.json-schema.org/suite/root.json"
        do {
            try registry.add(c.schema, retrievalURI: uri)
            let schemaURI = c.schema["$id"]?.stringValue.map { URIReference.resolve($0, against: uri) } ?? uri
            var options = ValidatorOptions(formatAssertion: formatAssertion, unknownKeywords: .ignore)
            let validator = try JSONSchemaValidator(registry: registry, uri: schemaURI, options: options)
            options.flatProgram = false
            let nodeWalker = try JSONSchemaValidator(registry: registry, uri: schemaURI, options: options)
            let valid = validator.isValid(c.data)
            let detailed = validator.validate(c.data)
            if detailed.isValid != valid { return "fast and detailed paths disagree" }
            if nodeWalker.isValid(c.data) != valid { return "flat and node-walking fast paths disagree" }
            if validator.usesFlatProgram { onFlatPath() }
            if !valid && detailed.errors.isEmpty { return "invalid without any error reported" }
            return valid == c.valid ? nil : "expected \(c.valid ? "valid" : "invalid"), got \(valid ? "valid" : "invalid")"
        } catch {
            return "schema error: \(error)"
        }
    }
}

@Suite("JSON-Schema-Test-Suite draft 2020-12")
struct OfficialSuiteTests {
    @Test func everyRequiredTestPasses() throws {
        try #require(FileManager.default.fileExists(atPath: OfficialSuite.root.path), "suite not found at \(OfficialSuite.root.path)")
        let cases = OfficialSuite.cases(in: "")
        #expect(cases.count >= 1299)
        var failures: [String] = []
        var flat = 0
        for c in cases where OfficialSuite.knownFailures[c.description] == nil {
            if let problem = OfficialSuite.run(c, formatAssertion: false, onFlatPath: { flat += 1 }) { failures.append("\(c): \(problem)") }
        }
        #expect(failures.isEmpty, Comment(rawValue: "\(failures.count) of \(cases.count) failed:\n" + failures.joined(separator: "\n")))
        // Most cases must exercise the flat fast path, or the agreement check above proves little.
        #expect(flat * 4 > cases.count * 3 && flat < cases.count, "\(flat) of \(cases.count) cases on the flat path")
    }

    static let assertedFormats = [
        "date-time", "date", "time", "duration", "email", "hostname", "ipv4", "ipv6", "uri", "uri-reference", "uuid", "regex", "json-pointer",
    ]

    @Test(arguments: assertedFormats)
    func optionalFormatTestsPassWithFormatAssertion(_ format: String) throws {
        let cases = OfficialSuite.cases(in: "optional/format").filter { $0.file == "optional/format/\(format).json" }
        #expect(!cases.isEmpty)
        var failures: [String] = []
        for c in cases where OfficialSuite.knownFailures[c.description] == nil {
            if let problem = OfficialSuite.run(c, formatAssertion: true) { failures.append("\(c): \(problem)") }
        }
        #expect(failures.isEmpty, Comment(rawValue: "\(failures.count) of \(cases.count) failed:\n" + failures.joined(separator: "\n")))
    }
}

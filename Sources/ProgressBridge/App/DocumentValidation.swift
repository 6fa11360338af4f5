import Foundation
import JSONSchema
import ProgressContract

/// The `progress-bridge validate` command's work: builds a registry from directories, compiles
/// one schema, and judges documents, one JSON result line each (the "basic" output format).
public struct DocumentValidation {
    /// A problem with the command line or the schemas (exit code 2).
    public struct UsageError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    let validator: JSONSchemaValidator
    let parser = JSONParser(limits: .init(maxDepth: 512, maxBytes: 64 << 20))

    /// - Parameters:
    ///   - schemasDirectory: the contract's schemas, registered under their `$id`s.
    ///   - schemaFile: validate against this file instead of the envelope.
    ///   - maps: `URL_PREFIX=DIR` pairs: files under DIR resolve as URL_PREFIX + relative path.
    public init(schemasDirectory: String, schemaFile: String?, maps: [String], formatAssertion: Bool) throws(UsageError) {
        var registry = SchemaRegistry.withMetaSchemas()
        do {
            if FileManager.default.fileExists(atPath: schemasDirectory) {
                try registry.addDirectory(schemasDirectory, uriPrefix: ContractSchemas.uriPrefix)
            } else if schemaFile == nil {
                throw UsageError(message: "--schemas \(schemasDirectory) does not exist")
            }
            for map in maps {
                guard let eq = map.firstIndex(of: "="), eq != map.startIndex, map.index(after: eq) != map.endIndex else {
                    throw UsageError(message: "--map expects URL_PREFIX=DIR, got \"\(map)\"")
                }
                try registry.addDirectory(String(map[map.index(after: eq)...]), uriPrefix: String(map[..<eq]))
            }
            let uri: String
            var options = ValidatorOptions(formatAssertion: formatAssertion, unknownKeywords: .reject)
            if let schemaFile {
                let url = URL(fileURLWithPath: schemaFile).standardizedFileURL
                guard let data = FileManager.default.contents(atPath: url.path) else {
                    throw UsageError(message: "--schema \(schemaFile) cannot be read")
                }
                let document = try parser.parse(data)
                uri = try registry.add(document, retrievalURI: url.absoluteString)
                options.unknownKeywords = .ignore  // someone else's schema: unknown keywords are annotations
            } else {
                uri = ContractSchemas.envelopeURI
            }
            validator = try JSONSchemaValidator(registry: registry, uri: uri, options: options)
        } catch let error as UsageError {
            throw error
        } catch {
            throw UsageError(message: "schema error: \(error)")
        }
    }

    /// Judges one document; returns the result line and whether it was valid.
    public func judge(_ bytes: some Collection<UInt8>, source: String) -> (line: String, valid: Bool) {
        var result: JSONObject = ["source": .string(source)]
        do {
            let document = try parser.parse(bytes)
            let outcome = validator.validate(document, maxErrors: 50)
            result["valid"] = .bool(outcome.isValid)
            result["errors"] = .array(
                outcome.errors.map { error in
                    .object([
                        "instanceLocation": .string(error.instanceLocation), "keywordLocation": .string(error.keywordLocation),
                        "absoluteKeywordLocation": .string(error.absoluteKeywordLocation), "error": .string(error.message),
                    ])
                })
            return (JSONValue.object(result).serialized(), outcome.isValid)
        } catch {
            result["valid"] = .bool(false)
            result["errors"] = .array([.object(["instanceLocation": .string(""), "keywordLocation": .string(""), "error": .string("not JSON: \(error)")])])
            return (JSONValue.object(result).serialized(), false)
        }
    }
}

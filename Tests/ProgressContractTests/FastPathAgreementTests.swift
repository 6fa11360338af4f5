import Testing

@testable import JSONSchema
@testable import ProgressContract

/// The validator's flat fast path against its node-walking evaluator, on the contract's schemas: every
/// member of every event removed or swapped for values of every type, alone and together with another
/// member's removal, and every event type crossed with every other type's data — all must be judged the
/// same by both.
@Suite("Flat fast path agrees with the node-walking evaluator on mutated events")
struct FastPathAgreementTests {
    static let seeds: [String] = [
        ContractFixtures.event("job.state_changed", #"{"from":null,"to":"running","job":{"title":"T","total_videos":10,"processing_deadline_ms":7200000,"created_at":"2025-11-05T00:52:13Z","priority":"normal","sheet_source":{"sheet_id":"1A","range":"A1:Z1000"}}}"#),
        ContractFixtures.event("job.progress", #"{"total_videos":10,"completed":2,"failed":1,"skipped":0,"processing":3,"percent_complete":30}"#),
        ContractFixtures.event("video.created", #"{"video_id":"v1","row_index":2,"title":"Intro"}"#),
        ContractFixtures.event("video.updated", #"{"video_id":"v1","state":"processing","progress_percent":40.5,"stage":"render","attempt":1}"#),
        ContractFixtures.event("video.completed", #"{"video_id":"v1","processing_ms":1000,"output_url":"s3://b/k.mp4","attempt":1}"#),
        ContractFixtures.event("video.failed", #"{"video_id":"v1","error":{"code":"E","message":"boom"},"retryable":true,"attempt":2}"#),
        ContractFixtures.event("job.completed", #"{"summary":{"total_videos":10,"completed":9,"failed":1,"skipped":0,"duration_ms":5000}}"#),
        ContractFixtures.event("job.failed", #"{"error":{"code":"E","message":"boom"}}"#),
        ContractFixtures.event("job.canceled", #"{"reason":"user","canceled_by":"ops"}"#),
    ]

    /// Replacement values: every JSON type, boundary numbers, strings that hit length, pattern and enum edges.
    static let replacements: [JSONValue] = [
        .null, .bool(true), .number(JSONNumber(Int64(-1))), .number(JSONNumber(Int64(0))), .number(JSONNumber(1.5)), .number(JSONNumber(100.0)),
        .number(JSONNumber(1e300)), .string(""), .string("x"), .string(String(repeating: "é", count: 130)), .string("job_ok-1"),
        .string("job_"), .string("running"), .string("video.failed"), .string("2026-11-24T10:15:30Z"), .array([]),
        .array([.number(JSONNumber(Int64(1))), .string("a")]), .object(JSONObject()),
        .object(["code": .string("E"), "message": .string("m")]),
    ]

    @Test func bothPathsJudgeEveryMutantAlike() throws {
        var registry = SchemaRegistry()
        try registry.addDirectory(ContractFixtures.schemasDirectory, uriPrefix: ContractSchemas.uriPrefix)
        let flat = try ContractSchemas.envelopeValidator(from: registry)
        var options = ValidatorOptions(formatAssertion: false, unknownKeywords: .reject)
        options.flatProgram = false
        let walker = try JSONSchemaValidator(registry: registry, uri: flat.schemaURI, options: options)
        #expect(flat.usesFlatProgram, "the contract's schemas must take the flat fast path")

        let parsed = try Self.seeds.map { try JSONParser().parse(Array($0.utf8)) }
        var mutants: [JSONValue] = []
        for seed in parsed {
            let paths = Self.paths(in: seed)
            let dataPaths = paths.filter { $0.count > 1 && $0[0] == .key("data") }
            for path in paths {
                mutants.append(Self.replacing(seed, at: path[...], with: nil))
                for replacement in Self.replacements {
                    let mutant = Self.replacing(seed, at: path[...], with: replacement)
                    mutants.append(mutant)
                    // The same with one member of `data` (where most members are optional) gone too.
                    for other in dataPaths where !other.starts(with: path) && !path.starts(with: other) {
                        mutants.append(Self.replacing(mutant, at: other[...], with: nil))
                    }
                }
            }
            for other in parsed {
                mutants.append(Self.replacing(seed, at: [.key("data")], with: other["data"]))
            }
        }
        var verdicts = (valid: 0, invalid: 0)
        var disagreements: [String] = []
        var rerepresented = 0
        for (n, mutant) in mutants.enumerated() {
            let expected = walker.isValid(mutant)
            if expected { verdicts.valid += 1 } else { verdicts.invalid += 1 }
            if flat.isValid(mutant) != expected, disagreements.count < 5 { disagreements.append(mutant.serialized()) }
            // The fast path compares strings by representation first: the same strings in another representation
            // (native storage, where the schema's are small or shared) must be judged alike.
            if n % 3 == 0 {
                rerepresented += 1
                if flat.isValid(Self.rerepresented(mutant)) != expected, disagreements.count < 5 { disagreements.append("(re-represented) " + mutant.serialized()) }
            }
        }
        #expect(rerepresented > 3_000)
        #expect(mutants.count > 10_000)
        #expect(disagreements.isEmpty, Comment(rawValue: disagreements.joined(separator: "\n")))
        // Both outcomes must be well represented, or the comparison proves little.
        #expect(verdicts.valid > 500 && verdicts.invalid > 500, "valid \(verdicts.valid), invalid \(verdicts.invalid)")
    }

    /// `value` with every string, member names included, rebuilt in storage of its own (never the small form, never
    /// shared with the schema's strings): the same contents in another representation.
    static func rerepresented(_ value: JSONValue) -> JSONValue {
        func copy(_ string: String) -> String {
            var copy = String()
            copy.reserveCapacity(64)
            copy.append(contentsOf: string)
            return copy
        }
        switch value {
        case .string(let string): return .string(copy(string))
        case .array(let items): return .array(items.map(rerepresented))
        case .object(let object):
            var rebuilt = JSONObject()
            for (key, member) in object { rebuilt[copy(key)] = rerepresented(member) }
            return .object(rebuilt)
        default: return value
        }
    }

    enum Step: Equatable {
        case key(String)
        case index(Int)
    }

    /// Every member and item path in `value`, outermost first.
    static func paths(in value: JSONValue) -> [[Step]] {
        switch value {
        case .object(let object): object.flatMap { key, member in [[.key(key)]] + paths(in: member).map { [.key(key)] + $0 } }
        case .array(let items): items.indices.flatMap { i in [[.index(i)]] + paths(in: items[i]).map { [.index(i)] + $0 } }
        default: []
        }
    }

    /// `value` with the member or item at `path` replaced (or removed, for nil).
    static func replacing(_ value: JSONValue, at path: ArraySlice<Step>, with replacement: JSONValue?) -> JSONValue {
        guard let step = path.first else { return replacement ?? value }
        switch (value, step) {
        case (.object(var object), .key(let key)):
            object[key] = path.count == 1 ? replacement : object[key].map { replacing($0, at: path.dropFirst(), with: replacement) }
            return .object(object)
        case (.array(var items), .index(let i)) where items.indices.contains(i):
            if path.count == 1 {
                if let replacement { items[i] = replacement } else { items.remove(at: i) }
            } else {
                items[i] = replacing(items[i], at: path.dropFirst(), with: replacement)
            }
            return .array(items)
        default:
            return value
        }
    }
}

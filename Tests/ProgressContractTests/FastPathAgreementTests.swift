import Testing

@testable import JSONSchema
@testable import ProgressContract

/// The validator's flat fast path against its node-walking evaluator, on the contract's schemas:
/// thousands of mutated events (members removed, values swapped for others of every type, event
/// types crossed with other types' data) must be judged the same by both.
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

        var random = SplitMix64(seed: 0x5EED)
        let parsed = try Self.seeds.map { try JSONParser().parse(Array($0.utf8)) }
        var verdicts = (valid: 0, invalid: 0)
        var disagreements: [String] = []
        for round in 0..<20_000 {
            var mutant = parsed[round % parsed.count]
            for _ in 0..<(1 + Int(random.next() % 3)) { mutant = mutate(mutant, &random) }
            let expected = walker.isValid(mutant)
            if expected { verdicts.valid += 1 } else { verdicts.invalid += 1 }
            if flat.isValid(mutant) != expected, disagreements.count < 5 { disagreements.append(mutant.serialized()) }
        }
        #expect(disagreements.isEmpty, Comment(rawValue: disagreements.joined(separator: "\n")))
        // Both outcomes must be well represented, or the comparison proves little.
        #expect(verdicts.valid > 500 && verdicts.invalid > 500, "valid \(verdicts.valid), invalid \(verdicts.invalid)")
    }

    /// One random change somewhere in `value`: a member removed or replaced, or an item replaced.
    func mutate(_ value: JSONValue, _ random: inout SplitMix64) -> JSONValue {
        let descend = random.next() % 3 != 0
        switch value {
        case .object(var object) where !object.isEmpty:
            let keys = object.keys
            let key = keys[Int(random.next() % UInt64(keys.count))]
            if descend, let member = object[key], member.isContainer {
                object[key] = mutate(member, &random)
            } else if random.next() % 4 == 0 {
                object[key] = nil
            } else {
                object[key] = Self.replacements[Int(random.next() % UInt64(Self.replacements.count))]
            }
            return .object(object)
        case .array(var items) where !items.isEmpty:
            let i = Int(random.next() % UInt64(items.count))
            items[i] = descend ? mutate(items[i], &random) : Self.replacements[Int(random.next() % UInt64(Self.replacements.count))]
            return .array(items)
        default:
            return Self.replacements[Int(random.next() % UInt64(Self.replacements.count))]
        }
    }
}

extension JSONValue {
    fileprivate var isContainer: Bool {
        switch self {
        case .object, .array: true
        default: false
        }
    }
}

/// A small seeded generator, so a failure reproduces.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

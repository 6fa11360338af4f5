import Testing

@testable import JSONSchema

@Suite("Validator")
struct ValidatorTests {
    func validator(_ schema: String, options: ValidatorOptions = .init()) throws -> JSONSchemaValidator {
        var registry = SchemaRegistry()
        try registry.add(try JSONParser().parse(schema), retrievalURI: "https://example.test/root.json")
        return try JSONSchemaValidator(registry: registry, uri: "https://example.test/root.json", options: options)
    }

    /// Strings are the same for `const` and `enum` only when their code points are: not when they are merely
    /// canonically equivalent (as Swift's `==` would have it).
    @Test func stringsCompareByCodePoints() throws {
        let pairs: [(String, String, Bool)] = [
            ("", "", true), ("a", "a", true), ("video.updated", "video.updated", true), ("video.updated", "video.created", false),
            ("\u{E9}", "e\u{301}", false), ("e\u{301}", "e\u{301}", true), ("\u{212B}", "\u{C5}", false), ("K", "\u{212A}", false),
            ("\u{1E0A}\u{323}", "\u{1E0C}\u{307}", false),  // canonically equivalent, the same number of bytes
            (String(repeating: "é", count: 40), String(repeating: "é", count: 40), true),
            (String(repeating: "x", count: 40) + "a", String(repeating: "x", count: 40) + "b", false),
        ]
        for (a, b, same) in pairs {
            #expect(JSONValue.sameCodePoints(a, b) == same, "\(a.unicodeScalars.map(\.value)) \(b.unicodeScalars.map(\.value))")
            #expect(JSONValue.sameCodePoints(b, a) == same)
        }
        let v = try validator(#"{"enum":["\u00e9","video.updated"]}"#)
        #expect(v.validate(.string("\u{E9}")).isValid && v.validate(.string("video.updated")).isValid)
        #expect(!v.validate(.string("e\u{301}")).isValid && !v.validate(.string("video.update")).isValid)
    }

    /// Strings of equal length are compared eight bytes at a time, then byte by byte: a difference in any byte, of
    /// every length around the word's (small strings and heap strings alike), makes them unequal — for `enum` on the
    /// flat path too.
    @Test func aDifferenceInAnyByteTellsStringsApart() throws {
        var checked = 0
        for length in 1...40 {
            let base = String((0..<length).map { Character(UnicodeScalar(UInt8(ascii: "a") + UInt8($0 % 26))) })
            let v = try validator(#"{"enum":["\#(base)"]}"#)
            #expect(JSONValue.sameCodePoints(base, String(Array(base))) && v.isValid(.string(base)))
            for place in 0..<length {
                var bytes = Array(base.utf8)
                bytes[place] = UInt8(ascii: "Z")
                let other = String(decoding: bytes, as: UTF8.self)
                #expect(!JSONValue.sameCodePoints(base, other) && !JSONValue.sameCodePoints(other, base), "\(length) \(place)")
                #expect(!v.isValid(.string(other)), "\(length) \(place)")
                checked += 1
            }
        }
        #expect(checked == 820)
    }

    /// Strings are compared by representation first (equal words, equal strings), then by content: the same contents
    /// in another representation — native storage against a small string, two storages — are equal, in a comparison,
    /// as an object's member name (either side), as an `enum` value and as a discriminator's tag.
    @Test func theSameContentsInAnotherRepresentationAreTheSameString() throws {
        func stored(_ text: String) -> String {
            var copy = String()
            copy.reserveCapacity(64)
            copy.append(contentsOf: text)
            return copy
        }
        var checked = 0
        for text in ["a", "video.completed", "0123456789abcdef", "job.state_changed", "é✓"] {
            let other = stored(text)
            #expect(!text.hasSameRepresentation(as: other), "\(text): the test needs two representations")
            #expect(JSONValue.sameCodePoints(text, other) && JSONValue.sameCodePoints(other, text))
            #expect(!JSONValue.sameCodePoints(text, stored(text + "x")))
            let object: JSONObject = [text: .number(JSONNumber(Int64(1))), "z": .null]
            let storedKeys: JSONObject = [other: .number(JSONNumber(Int64(1))), "z": .null]
            #expect(object[other] == .number(JSONNumber(Int64(1))) && storedKeys[text] == .number(JSONNumber(Int64(1))))
            #expect(object[stored(text + "x")] == nil)
            let v = try validator(#"{"enum":["\#(text)"]}"#)
            #expect(v.isValid(.string(other)) && !v.isValid(.string(stored(text + "x"))))
            // Two branches on "t": the one for `text` requires "n" to be a string.
            let d = try validator(
                #"{"allOf":[{"if":{"properties":{"t":{"const":"\#(text)"}},"required":["t"]},"then":{"properties":{"n":{"type":"string"}}}},{"if":{"properties":{"t":{"const":"other"}},"required":["t"]},"then":{"properties":{"n":{"type":"integer"}}}}]}"#)
            #expect(d.isValid(.object(["t": .string(text), "n": .string("s")])) && !d.isValid(.object(["t": .string(text), "n": .null])))
            #expect(d.isValid(.object([stored("t"): .string(other), "n": .string("s")])))
            #expect(!d.isValid(.object(["t": .string(other), "n": .number(JSONNumber(Int64(1)))])))
            #expect(!d.isValid(.object(["t": .string(stored("other")), "n": .string("s")])))
            // The tag handed out by a parser that knows the schema's strings (16 bytes and less): the very constant.
            let known = try JSONParser(knownStrings: d.knownStrings).parse(#"{"t":"\#(text)","n":1}"#)
            let knownValid = try JSONParser(knownStrings: d.knownStrings).parse(#"{"t":"\#(text)","n":"s"}"#)
            #expect(!d.isValid(known) && d.isValid(knownValid))
            checked += 1
        }
        #expect(checked == 5)
    }

    /// A discriminator whose constants repeat applies every branch of the tag's constant, not only the first.
    @Test func everyBranchOfARepeatedConstantApplies() throws {
        let d = try validator(
            #"{"allOf":[{"if":{"properties":{"t":{"const":"a"}},"required":["t"]},"then":{"properties":{"n":{"type":"string"}}}},{"if":{"properties":{"t":{"const":"a"}},"required":["t"]},"then":{"properties":{"n":{"minLength":2}}}},{"if":{"properties":{"t":{"const":"b"}},"required":["t"]},"then":{"properties":{"n":{"type":"integer"}}}}]}"#)
        for parser in [JSONParser(), JSONParser(knownStrings: d.knownStrings)] {
            #expect(try d.isValid(parser.parse(#"{"t":"a","n":"xy"}"#)))
            #expect(try !d.isValid(parser.parse(#"{"t":"a","n":"x"}"#)), "the second branch of \"a\" applies too")
            #expect(try !d.isValid(parser.parse(#"{"t":"a","n":12}"#)))
            #expect(try d.isValid(parser.parse(#"{"t":"b","n":12}"#)))
            #expect(try !d.isValid(parser.parse(#"{"t":"b","n":"xy"}"#)))
        }
    }

    @Test func basicOutputNamesInstanceKeywordAndSchemaLocations() throws {
        let v = try validator(#"{"type":"object","properties":{"n":{"type":"integer","minimum":0}},"required":["id"]}"#)
        let result = v.validate(try JSONParser().parse(#"{"n":-1}"#))
        #expect(!result.isValid)
        let minimum = try #require(result.errors.first { $0.keywordLocation == "/properties/n/minimum" })
        #expect(minimum.instanceLocation == "/n")
        #expect(minimum.absoluteKeywordLocation == "https://example.test/root.json#/properties/n/minimum")
        #expect(result.errors.contains { $0.keywordLocation == "/required" && $0.message.contains("\"id\"") })
    }

    @Test func refsAcrossDocumentsAndPointerEscapes() throws {
        var registry = SchemaRegistry()
        try registry.add(
            try JSONParser().parse(#"{"$id":"https://example.test/defs.json","$defs":{"a/b":{"type":"string"},"t~":{"const":1}}}"#),
            retrievalURI: "https://example.test/defs.json")
        try registry.add(
            try JSONParser().parse(##"{"properties":{"x":{"$ref":"defs.json#/$defs/a~1b"},"y":{"$ref":"defs.json#/$defs/t~0"}}}"##),
            retrievalURI: "https://example.test/dir/../root.json")
        let v = try JSONSchemaValidator(registry: registry, uri: "https://example.test/root.json")
        #expect(v.isValid(try JSONParser().parse(#"{"x":"s","y":1}"#)))
        #expect(!v.isValid(try JSONParser().parse(#"{"x":1}"#)))
        #expect(!v.isValid(try JSONParser().parse(#"{"y":2}"#)))
    }

    @Test func recursiveRefsTerminate() throws {
        let v = try validator(##"{"type":"object","properties":{"child":{"$ref":"#"}},"additionalProperties":false}"##)
        #expect(v.isValid(try JSONParser().parse(#"{"child":{"child":{}}}"#)))
        #expect(!v.isValid(try JSONParser().parse(#"{"child":{"child":{"x":1}}}"#)))
    }

    @Test func unknownKeywordsAreRefusedByDefault() {
        #expect {
            try validator(#"{"type":"object","requird":["x"]}"#)
        } throws: { error in
            "\(error)".contains("requird")
        }
        #expect(throws: Never.self) { try validator(#"{"requird":["x"]}"#, options: .init(unknownKeywords: .ignore)) }
    }

    @Test func formatIsAnnotationUnlessAsserted() throws {
        let schema = #"{"format":"date-time"}"#
        #expect(try validator(schema).isValid(.string("nope")))
        #expect(!(try validator(schema, options: .init(formatAssertion: true)).isValid(.string("nope"))))
        #expect(try validator(schema, options: .init(formatAssertion: true)).isValid(.string("2026-11-24T10:15:30Z")))
    }

    @Test func combinatorsAndConditionals() throws {
        let v = try validator(
            #"{"oneOf":[{"type":"integer","maximum":50},{"type":"number","minimum":10}],"if":{"minimum":100},"then":{"multipleOf":5},"not":{"const":7}}"#)
        #expect(v.isValid(.number(JSONNumber(Int64(3)))))
        #expect(!v.isValid(.number(JSONNumber(Int64(7)))))  // not
        #expect(!v.isValid(.number(JSONNumber(12.0))))  // integer ≤ 50 and ≥ 10: both branches of oneOf
        #expect(v.isValid(.number(JSONNumber(12.5))))
        #expect(!v.isValid(.number(JSONNumber(Int64(101)))))  // if → then multipleOf 5
        #expect(v.isValid(.number(JSONNumber(Int64(105)))))
    }

    @Test func errorsUnderFailedAlternativesAreNotReportedAsTheInstances() throws {
        let v = try validator(#"{"anyOf":[{"type":"string"},{"type":"integer"}]}"#)
        let result = v.validate(.bool(true))
        #expect(result.errors.count == 1)
        #expect(result.errors.first?.keywordLocation == "/anyOf")
    }
}

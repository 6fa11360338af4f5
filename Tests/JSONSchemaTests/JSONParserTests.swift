import Testing

@testable import JSONSchema

@Suite("JSON parser")
struct JSONParserTests {
    let parser = JSONParser()

    @Test func parsesEveryKindOfValue() throws {
        let value = try parser.parse(#"{"a":[1,-2.5,1e3,true,false,null,"x\u00e9\n"],"b":{}}"#)
        #expect(value["a"]?.arrayValue?.count == 7)
        #expect(value["a"]?.arrayValue?[0] == .number(JSONNumber(Int64(1))))
        #expect(value["a"]?.arrayValue?[1].doubleValue == -2.5)
        #expect(value["a"]?.arrayValue?[2].int64Value == 1000)
        #expect(value["a"]?.arrayValue?[6].stringValue == "xé\n")
        #expect(value["b"]?.objectValue?.isEmpty == true)
    }

    /// Strings are scanned eight bytes at a time while no byte needs a look: a byte that does must be found at every
    /// place in the word and across words (lengths around 8 and 16), and plain bytes below and above each bound pass.
    @Test func everySpecialByteIsFoundWhereverItIsInAString() throws {
        enum Expect { case decodes(String), fails(JSONParseError.Kind) }
        let cases: [(bytes: [UInt8], expect: Expect)] = [
            (Array(#"\""#.utf8), .decodes("\"")), (Array(#"\\"#.utf8), .decodes("\\")), (Array(#"\n"#.utf8), .decodes("\n")),
            ([0x01], .fails(.controlCharacterInString)), ([0x1F], .fails(.controlCharacterInString)), ([0x00], .fails(.controlCharacterInString)),
            ([0x20], .decodes(" ")), ([0x7F], .decodes("\u{7F}")), ([0x21], .decodes("!")), ([0x5B], .decodes("[")), ([0x5D], .decodes("]")),
            (Array("é".utf8), .decodes("é")), (Array("✓".utf8), .decodes("✓")), ([0xFF], .fails(.invalidUTF8)), ([0xC3], .fails(.invalidUTF8)),
        ]
        var checked = 0
        for length in 0..<20 {
            for place in 0...length {
                for (special, expect) in cases {
                    let before = [UInt8](repeating: UInt8(ascii: "a"), count: place)
                    let after = [UInt8](repeating: UInt8(ascii: "b"), count: length - place)
                    let document = [UInt8(ascii: "\"")] + before + special + after + [UInt8(ascii: "\"")]
                    let prefix = String(repeating: "a", count: place)
                    let suffix = String(repeating: "b", count: length - place)
                    switch expect {
                    case .decodes(let text):
                        #expect(try parser.parse(document).stringValue == prefix + text + suffix, "\(document)")
                    case .fails(let kind):
                        let result = Result { () throws(JSONParseError) in try parser.parse(document) }
                        guard case .failure(let error) = result else {
                            Issue.record("\(document) parsed")
                            continue
                        }
                        #expect(error.kind == kind, "\(document)")
                    }
                    checked += 1
                }
            }
        }
        #expect(checked == 210 * cases.count)
    }

    /// The same strings inside a longer document: the eight-byte scan then reads words that run past the closing
    /// quote, and jumps to the first byte that needs a look. Each is compared with the bytes it was made of.
    @Test func stringsEndWhereTheirQuoteIsWhateverFollowsIt() throws {
        let padding = #",  "0123456789abcdef\"0123456789"]"#
        var checked = 0
        for length in 0..<24 {
            for place in 0...length {
                for special in ["\"", "é", "\n", "x"] {
                    let text = String(repeating: "a", count: place) + special + String(repeating: "b", count: length - place)
                    let escaped = text.replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
                    let value = try parser.parse("[\"" + escaped + "\"" + padding)
                    #expect(value.arrayValue?.first?.stringValue == text, "\(escaped)")
                    #expect(value.arrayValue?.last?.stringValue == "0123456789abcdef\"0123456789", "\(escaped)")
                    checked += 1
                }
            }
        }
        #expect(checked == 300 * 4)
    }

    /// A duplicate key is found however either copy is spelled (escaped or not, known to the parser or not), at every
    /// length, nested or not, among many keys; distinct keys that share a prefix, or are equal in another object, are
    /// not duplicates.
    @Test(arguments: [false, true])
    func duplicateKeysAreFoundHoweverTheyAreSpelled(someKeysKnown: Bool) throws {
        let parser = someKeysKnown ? JSONParser(knownStrings: KnownStrings(["k", "kk", "a", "data", "0123456789abcdef"])) : JSONParser()
        func isDuplicate(_ text: String) -> Bool {
            let result = Result { () throws(JSONParseError) in try parser.parse(text) }
            guard case .failure(let error) = result else { return false }
            return error.kind == .duplicateKey
        }
        for length in 0...20 {
            let key = String(repeating: "k", count: length)
            #expect(isDuplicate(#"{"\#(key)":1,"\#(key)":2}"#), "\(length)")
            if length == 0 { continue }  // ("x" twice below)
            #expect(try parser.parse(#"{"\#(key)":1,"\#(key)x":2,"x\#(key)":3}"#)["\(key)x"] == .number(JSONNumber(Int64(2))), "\(length)")
        }
        for (first, second) in [("a", #"\u0061"#), (#"\u0061"#, "a"), ("é", #"\u00e9"#), ("é", "é"), (#"a\/b"#, "a/b"), ("0123456789abcdef", #"0123456789abcde\u0066"#)] {
            #expect(isDuplicate(#"{"\#(first)":1,"\#(second)":2}"#), "\(first) \(second)")
            #expect(isDuplicate(#"{"x":0,"\#(first)":1,"y":{"\#(first)":5},"\#(second)":2}"#), "\(first) \(second)")
        }
        let many = (0..<20).map { #""key\#($0)":\#($0)"# }.joined(separator: ",")
        let object = try parser.parse("{" + many + "}")
        #expect(object.objectValue?.count == 20 && object["key19"] == .number(JSONNumber(Int64(19))))
        for repeated in [0, 7, 15, 16, 18, 19] {
            #expect(isDuplicate("{" + many + #","key\#(repeated)":0}"#), "\(repeated)")
        }
        #expect(try parser.parse(#"{"a":{"a":{"a":1}},"b":{"a":2},"c":[{"a":3},{"a":4}]}"#)["c"]?.arrayValue?.count == 2)
        #expect(isDuplicate(#"{"a":{"b":1},"b":{"c":{"d":2}},"a":3}"#))
    }

    @Test func integralDoublesAreIntegers() throws {
        #expect(try parser.parse("1.0") == parser.parse("1"))
        #expect(try parser.parse("1.0").typeName == "integer")
        #expect(try parser.parse("1.5").typeName == "number")
    }

    @Test func surrogatePairsDecode() throws {
        #expect(try parser.parse(#""\ud83d\ude00""#).stringValue == "😀")
        #expect(throws: JSONParseError.self) { try parser.parse(#""\ud83d""#) }
    }

    @Test(arguments: [
        ("", JSONParseError.Kind.empty), ("{", .unexpectedEnd), ("[1,]", .unexpectedCharacter), ("01", .invalidNumber),
        ("1 2", .trailingData), (#"{"a":1,"a":2}"#, .duplicateKey), ("\"\u{01}\"", .controlCharacterInString),
        (#""\x""#, .invalidEscape), ("nul", .unexpectedEnd), ("-", .invalidNumber), ("tru", .unexpectedEnd),
    ])
    func rejectsMalformedInput(text: String, kind: JSONParseError.Kind) {
        #expect {
            try parser.parse(text)
        } throws: { error in
            (error as? JSONParseError)?.kind == kind
        }
    }

    @Test func rejectsInvalidUTF8() {
        let bytes: [UInt8] = [0x22, 0xC3, 0x28, 0x22]
        #expect {
            try parser.parse(bytes)
        } throws: { error in
            (error as? JSONParseError)?.kind == .invalidUTF8
        }
    }

    @Test func depthLimitStopsDeepNestingWithoutCrashing() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect {
            try JSONParser(limits: .init(maxDepth: 64)).parse(deep)
        } throws: { error in
            (error as? JSONParseError)?.kind == .tooDeep
        }
        #expect(throws: Never.self) { try JSONParser(limits: .init(maxDepth: 64)).parse(String(repeating: "[", count: 64) + String(repeating: "]", count: 64)) }
    }

    @Test func sizeLimitIsEnforced() {
        #expect {
            try JSONParser(limits: .init(maxBytes: 10)).parse(#"{"a":"0123456789"}"#)
        } throws: { error in
            (error as? JSONParseError)?.kind == .tooLarge
        }
    }

    @Test func serializationRoundTrips() throws {
        let text = #"{"a":[1,2.5,"q\"\\\n"],"b":null,"c":true}"#
        let value = try parser.parse(text)
        #expect(try parser.parse(value.serialized()) == value)
    }
}

@Suite("RFC 3339")
struct RFC3339Tests {
    @Test func parsesAndFormats() {
        let ms = RFC3339.parseMilliseconds("2026-11-24T10:15:30.123Z")
        #expect(ms == 1_795_515_330_123)
        #expect(RFC3339.format(milliseconds: ms!) == "2026-11-24T10:15:30.123Z")
        #expect(RFC3339.parseMilliseconds("2026-11-24T11:15:30.123+01:00") == ms)
        #expect(RFC3339.parseMilliseconds("1970-01-01T00:00:00Z") == 0)
    }

    @Test(arguments: ["2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-24 10:15", "2026-11-24T25:00:00Z", "yesterday", "2026-11-24T10:15:30"])
    func rejectsInvalid(_ text: String) {
        #expect(RFC3339.parseMilliseconds(text) == nil)
    }
}

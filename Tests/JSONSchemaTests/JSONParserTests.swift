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

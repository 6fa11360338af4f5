import Testing

@testable import JSONSchema

@Suite("Known strings: a parser hands out the schemas' strings ready-made")
struct KnownStringsTests {
    static let known = ["a", "seq", "job_id", "video_id", "occurred_at", "progress_percent", "video.completed", "é", String(repeating: "x", count: 17)]

    /// A known string is handed out only for exactly its bytes: the same string one byte shorter or longer, or one
    /// byte off at any place, is made afresh — wherever the string stands (its bytes are read as two words with those
    /// past its end masked off, or one at a time near the document's end).
    @Test func aKnownStringIsHandedOutForExactlyItsBytes() throws {
        let parser = JSONParser(knownStrings: KnownStrings(Self.known))
        var spellings: [String] = []
        for word in Self.known {
            spellings += [word, String(word.dropLast()), word + "s"]
            for i in word.indices { spellings.append(word.replacingCharacters(in: i...i, with: "Z")) }
        }
        var checked = 0
        for spelling in spellings {
            // As a key and as a value; at the document's end, and with more than 16 bytes after it.
            for document in [#"{"\#(spelling)":"\#(spelling)"}"#, #"["\#(spelling)",{"\#(spelling)":1},"\#(String(repeating: "q", count: 20))"]"#] {
                let withKnown = try parser.parse(document)
                #expect(withKnown == (try JSONParser().parse(document)), "\(document)")
                let strings = Self.strings(in: withKnown).filter { !$0.hasPrefix("qqq") }
                #expect(strings.count >= 2 && strings.allSatisfy { Array($0.utf8) == Array(spelling.utf8) }, "\(document): \(strings)")
                checked += 1
            }
        }
        #expect(checked == spellings.count * 2 && checked > 200)
    }

    /// What a look-up finds, byte for byte: the known strings of 1 – 16 ASCII bytes, read one at a time at the end of
    /// a document and as two words inside one (a closing quote and more after them); nothing for the others.
    @Test func onlyShortASCIIStringsAreKept() {
        let table = KnownStrings(Self.known)
        func lookUp(_ word: String) -> String? {
            Array(word.utf8).withUnsafeBufferPointer { table.string(in: $0, from: 0, count: $0.count) }
        }
        func lookUpInside(_ word: String) -> String? {
            Array(("[\"" + word + "\"," + String(repeating: " ", count: 20) + "]").utf8).withUnsafeBufferPointer {
                table.string(in: $0, from: 2, count: word.utf8.count)
            }
        }
        var found = 0
        for word in Self.known where word.utf8.count <= 16 && word.utf8.allSatisfy({ $0 < 0x80 }) {
            #expect(lookUp(word) == word && lookUpInside(word) == word, "\(word)")
            #expect(lookUpInside(String(word.dropLast())) != word && lookUpInside(word + "s") == nil)
            found += 1
        }
        #expect(found == 7)
        // Every length a table keeps, on both ways of reading.
        let lengths = (1...16).map { length in String((0..<length).map { Character(UnicodeScalar(UInt8(ascii: "a") + UInt8(($0 * 7 + length) % 26))) }) }
        let byLength = KnownStrings(lengths)
        for word in lengths {
            let inside = Array(("[\"" + word + "\"," + String(repeating: " ", count: 20) + "]").utf8).withUnsafeBufferPointer {
                byLength.string(in: $0, from: 2, count: word.utf8.count)
            }
            let atEnd = Array(word.utf8).withUnsafeBufferPointer { byLength.string(in: $0, from: 0, count: $0.count) }
            #expect(inside == word && atEnd == word, "\(word)")
        }
        #expect(lookUp("é") == nil)
        #expect(lookUp(String(repeating: "x", count: 17)) == nil)
        #expect(lookUp("typ") == nil)
        #expect(KnownStrings.none.isEmpty && !table.isEmpty)
    }

    /// A validator offers its schemas' member names and enum values, and parsing with them gives the same documents.
    @Test func aValidatorsKnownStringsAreItsSchemasNames() throws {
        var registry = SchemaRegistry()
        try registry.add(
            try JSONParser().parse(
                #"{"$id":"https://example.test/k.json","type":"object","properties":{"kind":{"enum":["video.completed","job.progress"]},"job_id":{"type":"string"}},"required":["seq"]}"#),
            retrievalURI: "https://example.test/k.json")
        let validator = try JSONSchemaValidator(registry: registry, uri: "https://example.test/k.json")
        let table = validator.knownStrings
        func lookUp(_ word: String) -> String? {
            Array(word.utf8).withUnsafeBufferPointer { table.string(in: $0, from: 0, count: $0.count) }
        }
        for word in ["kind", "video.completed", "job.progress", "job_id", "seq"] { #expect(lookUp(word) == word, "\(word)") }
        #expect(lookUp("type") == nil && lookUp("object") == nil)
        let document = #"{"kind":"video.completed","job_id":"job_1","seq":3,"other":"job.progress"}"#
        #expect(try JSONParser(knownStrings: table).parse(document) == JSONParser().parse(document))
    }

    /// Every string of a document, keys included.
    static func strings(in value: JSONValue) -> [String] {
        switch value {
        case .string(let s): [s]
        case .array(let items): items.flatMap { strings(in: $0) }
        case .object(let members): members.flatMap { [$0.key] + strings(in: $0.value) }
        default: []
        }
    }
}

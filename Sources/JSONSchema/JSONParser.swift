/// Limits that keep hostile input from exhausting memory or the stack.
public struct JSONParserLimits: Sendable {
    /// Deepest nesting of arrays and objects accepted. Default 64.
    public var maxDepth: Int
    /// Largest document accepted, in bytes. Default 1 MiB.
    public var maxBytes: Int

    /// Creates limits; the defaults suit progress events.
    public init(maxDepth: Int = 64, maxBytes: Int = 1 << 20) {
        self.maxDepth = maxDepth
        self.maxBytes = maxBytes
    }
}

/// Why a document could not be parsed, with the byte offset where it went wrong.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of problem it is.
    public enum Kind: String, Sendable {
        case empty, tooLarge, tooDeep, unexpectedCharacter, unexpectedEnd, invalidNumber,
            invalidEscape, invalidUTF8, controlCharacterInString, duplicateKey, trailingData
    }
    /// What kind of problem it is.
    public let kind: Kind
    /// Byte offset into the input.
    public let offset: Int
    /// A human-readable explanation.
    public let detail: String

    public var description: String { "\(detail) at byte \(offset)" }
}

/// A strict RFC 8259 JSON parser over UTF-8 bytes, with depth and size limits.
///
/// Duplicate object keys are rejected (their meaning differs between parsers,
/// so accepting them would let one event mean two things).
public struct JSONParser: Sendable {
    /// The limits this parser enforces.
    public let limits: JSONParserLimits
    /// Strings handed out as they are, not made again, when a document spells them (see `KnownStrings`).
    public let knownStrings: KnownStrings

    /// Creates a parser with the given limits, handing out `knownStrings` where a document spells one.
    public init(limits: JSONParserLimits = .init(), knownStrings: KnownStrings = .none) {
        self.limits = limits
        self.knownStrings = knownStrings
    }

    /// Parses one JSON document from `bytes`.
    public func parse<Bytes: Collection<UInt8>>(_ bytes: Bytes) throws(JSONParseError) -> JSONValue {
        let result: Result<JSONValue, JSONParseError>? = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(JSONParseError) in try parseBuffer(buffer) }
        }
        if let result { return try result.get() }
        let array = Array(bytes)
        return try array.withUnsafeBufferPointer { buffer in
            Result { () throws(JSONParseError) in try parseBuffer(buffer) }
        }.get()
    }

    /// Parses one JSON document from a string.
    public func parse(_ string: String) throws(JSONParseError) -> JSONValue {
        try parse(Array(string.utf8))
    }

    private func parseBuffer(_ buffer: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> JSONValue {
        if buffer.count > limits.maxBytes {
            throw JSONParseError(kind: .tooLarge, offset: limits.maxBytes, detail: "document is \(buffer.count) bytes, more than the limit of \(limits.maxBytes)")
        }
        var reader = Reader(bytes: buffer, maxDepth: limits.maxDepth, known: knownStrings)
        reader.skipWhitespace()
        if reader.atEnd { throw JSONParseError(kind: .empty, offset: 0, detail: "empty document") }
        let value = try reader.parseValue(depth: 0)
        reader.skipWhitespace()
        if !reader.atEnd {
            throw reader.error(.trailingData, "unexpected data after the JSON value")
        }
        return value
    }
}

private struct Reader {
    let bytes: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    /// Not optional: unwrapping an optional table for every string retained and released it.
    let known: KnownStrings
    let useKnown: Bool
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int, known: KnownStrings) {
        self.bytes = bytes
        self.maxDepth = maxDepth
        self.known = known
        self.useKnown = !known.isEmpty
    }

    var atEnd: Bool { index >= bytes.count }

    func error(_ kind: JSONParseError.Kind, _ detail: String) -> JSONParseError {
        JSONParseError(kind: kind, offset: index, detail: detail)
    }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw error(.unexpectedEnd, "unexpected end of input, expected a value") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default:
            throw error(.unexpectedCharacter, "unexpected character '\(printable(bytes[index]))', expected a value")
        }
    }

    func printable(_ byte: UInt8) -> String {
        byte >= 0x20 && byte < 0x7F ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16)
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw error(.unexpectedEnd, "unexpected end of input in literal") }
        let start = literal.utf8Start
        for offset in 0..<count where bytes[index + offset] != start[offset] {
            throw error(.unexpectedCharacter, "invalid literal, expected \(literal)")
        }
        index += count
    }

    mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > maxDepth { throw error(.tooDeep, "nesting deeper than the limit of \(maxDepth)") }
        index += 1  // {
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(JSONObject())
        }
        var members = JSONObject(reservingCapacity: 8)
        while true {
            skipWhitespace()
            guard index < bytes.count else { throw error(.unexpectedEnd, "unexpected end of input in object") }
            guard bytes[index] == UInt8(ascii: "\"") else {
                throw error(.unexpectedCharacter, "expected a string key in object")
            }
            let keyOffset = index
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else {
                throw error(atEnd ? .unexpectedEnd : .unexpectedCharacter, "expected ':' after object key")
            }
            index += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            if !members.insertNew(key, value) {
                throw JSONParseError(kind: .duplicateKey, offset: keyOffset, detail: "duplicate object key \"\(key)\"")
            }
            skipWhitespace()
            guard index < bytes.count else { throw error(.unexpectedEnd, "unexpected end of input in object") }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"): index += 1; return .object(members)
            default: throw error(.unexpectedCharacter, "expected ',' or '}' in object")
            }
        }
    }

    mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > maxDepth { throw error(.tooDeep, "nesting deeper than the limit of \(maxDepth)") }
        index += 1  // [
        var items: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            guard index < bytes.count else { throw error(.unexpectedEnd, "unexpected end of input in array") }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"): index += 1; return .array(items)
            default: throw error(.unexpectedCharacter, "expected ',' or ']' in array")
            }
        }
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONNumber {
        let start = index
        var isIntegral = true
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count, isDigit(bytes[index]) else { throw error(.invalidNumber, "invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if index < bytes.count, isDigit(bytes[index]) { throw error(.invalidNumber, "leading zeros are not allowed") }
        } else {
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isIntegral = false
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw error(.invalidNumber, "expected digits after '.'") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isIntegral = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else { throw error(.invalidNumber, "expected digits in exponent") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if isIntegral, index - start <= 18 {
            // Fast path: up to 18 digits cannot overflow Int64.
            var value: Int64 = 0
            var i = start
            let negative = bytes[i] == UInt8(ascii: "-")
            if negative { i += 1 }
            while i < index {
                value = value &* 10 &+ Int64(bytes[i] &- 0x30)
                i += 1
            }
            return JSONNumber(negative ? -value : value)
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        if isIntegral, let value = Int64(text) { return JSONNumber(value) }
        guard let value = Double(text) else { throw JSONParseError(kind: .invalidNumber, offset: start, detail: "invalid number") }
        return JSONNumber(value)
    }

    func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    mutating func parseString() throws(JSONParseError) -> String {
        index += 1  // opening quote
        let start = index
        // Fast path: no escapes; validate UTF-8 once over the slice (ASCII needs no validation).
        var ascii = true
        // Eight bytes at a time while none of them is a quote, a backslash, a control character or non-ASCII; at the
        // first word with one, straight to it (most of an event's strings are plain ASCII and end in that word).
        if let base = bytes.baseAddress {
            while index + 8 <= bytes.count {
                let word = UInt64(littleEndian: UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self))
                let special = Self.specialBytes(word)
                if special == 0 {
                    index += 8
                    continue
                }
                index += special.trailingZeroBitCount >> 3
                if base[index] == UInt8(ascii: "\"") {
                    index += 1
                    return plainString(from: start, count: index - 1 - start)
                }
                break  // a backslash, a control character or non-ASCII: the byte loop below decides
            }
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
                index += 1
                if ascii { return plainString(from: start, count: slice.count) }
                guard let string = String(validating: slice, as: UTF8.self) else {
                    throw JSONParseError(kind: .invalidUTF8, offset: start, detail: "string is not valid UTF-8")
                }
                return string
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw error(.controlCharacterInString, "unescaped control character in string") }
            if byte >= 0x80 { ascii = false }
            index += 1
        }
        var scratch = Array(UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                guard let string = String(validating: scratch, as: UTF8.self) else {
                    throw JSONParseError(kind: .invalidUTF8, offset: start, detail: "string is not valid UTF-8")
                }
                return string
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { throw error(.unexpectedEnd, "unexpected end of input in escape") }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""): scratch.append(0x22)
                case UInt8(ascii: "\\"): scratch.append(0x5C)
                case UInt8(ascii: "/"): scratch.append(0x2F)
                case UInt8(ascii: "b"): scratch.append(0x08)
                case UInt8(ascii: "f"): scratch.append(0x0C)
                case UInt8(ascii: "n"): scratch.append(0x0A)
                case UInt8(ascii: "r"): scratch.append(0x0D)
                case UInt8(ascii: "t"): scratch.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try parseHex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw error(.invalidEscape, "unpaired high surrogate in \\u escape")
                        }
                        index += 2
                        let low = try parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw error(.invalidEscape, "invalid low surrogate in \\u escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw error(.invalidEscape, "unpaired low surrogate in \\u escape")
                    }
                    scratch.append(contentsOf: String(Character(UnicodeScalar(scalar)!)).utf8)
                default:
                    throw error(.invalidEscape, "invalid escape '\\\(printable(escape))'")
                }
            default:
                if byte < 0x20 { throw error(.controlCharacterInString, "unescaped control character in string") }
                scratch.append(byte)
                index += 1
            }
        }
        throw error(.unexpectedEnd, "unterminated string")
    }

    /// The ASCII string without escapes at `bytes[start ..< start + count]`: a known one if it spells one.
    @inline(__always)
    func plainString(from start: Int, count: Int) -> String {
        if useKnown, let string = known.string(in: bytes, from: start, count: count) { return string }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<(start + count)]), as: UTF8.self)
    }

    /// The high bit of each byte of `word` (little-endian) that is `"`, `\\`, below 0x20 or above 0x7F — exact up to
    /// and including the first such byte (the classic "has a zero byte" and "has a byte less than n" tests: a borrow
    /// can mark bytes above a true one, never below), so `trailingZeroBitCount / 8` is that byte's position.
    @inline(__always)
    static func specialBytes(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        func zeroBytes(_ x: UInt64) -> UInt64 { (x &- ones) & ~x & highs }
        let control = (word &- 0x2020_2020_2020_2020) & ~word & highs
        return (word & highs) | control | zeroBytes(word ^ (ones &* 0x22)) | zeroBytes(word ^ (ones &* 0x5C))
    }

    mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error(.unexpectedEnd, "unexpected end of input in \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case 0x30...0x39: digit = UInt32(byte - 0x30)
            case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
            default: throw error(.invalidEscape, "invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }
}

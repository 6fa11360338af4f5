/// A JSON number, kept exactly enough for JSON Schema: integral values that fit in
/// 64 bits are compared as integers (so `1.0 == 1`), everything else as `Double`.
public struct JSONNumber: Sendable, Hashable, CustomStringConvertible {
    /// The value as a double (always set).
    public let double: Double
    /// The value as an integer, when it is integral and fits in `Int64`.
    public let integer: Int64?

    /// Creates a number from an integer.
    public init(_ value: Int64) {
        self.double = Double(value)
        self.integer = value
    }

    /// Creates a number from a double; integral values that fit in `Int64` also get an integer view.
    public init(_ value: Double) {
        self.double = value
        if value.isFinite, value.rounded(.towardZero) == value, abs(value) < 9.2e18 {
            self.integer = Int64(value)
        } else {
            self.integer = nil
        }
    }

    /// Whether JSON Schema considers this an integer (`1.0` is one).
    public var isInteger: Bool { integer != nil || (double.isFinite && double.rounded(.towardZero) == double) }

    public static func == (lhs: JSONNumber, rhs: JSONNumber) -> Bool {
        if let a = lhs.integer, let b = rhs.integer { return a == b }
        return lhs.double == rhs.double
    }

    public func hash(into hasher: inout Hasher) {
        if let integer { hasher.combine(integer) } else { hasher.combine(double) }
    }

    public var description: String {
        if let integer { return String(integer) }
        return String(double)
    }
}

/// A parsed JSON document.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// JSON equality: strings by code points (Swift's `==` would equate canonically equivalent
    /// strings, which JSON Schema tells apart), numbers by value, objects regardless of order.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.string(let a), .string(let b)): return JSONValue.sameCodePoints(a, b)
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)): return a == b
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .bool(let b): hasher.combine(b)
        case .number(let n): hasher.combine(n)
        case .string(let s): hasher.combine(s.utf8.count); for byte in s.utf8 { hasher.combine(byte) }
        case .array(let a): hasher.combine(a)
        case .object(let o): hasher.combine(o)
        }
    }

    /// Byte-wise UTF-8 equality (Swift's `==` equates canonically equivalent strings).
    @inlinable
    public static func sameCodePoints(_ a: String, _ b: String) -> Bool {
        // A String holds valid UTF-8, so the same bytes are the same code points. Compared straight: a canonical `==`
        // first, then a UTF-16 count to tell ASCII, cost more than the bytes of the short strings schemas compare
        // (every event's `type` against its enum and its discriminated branches). The same representation first: the
        // instance's strings are often the schema's own (see `KnownStrings`).
        if a.hasSameRepresentation(as: b) { return true }
        guard a.utf8.count == b.utf8.count else { return false }
        if let equal = a.utf8.withContiguousStorageIfAvailable({ pa in
            b.utf8.withContiguousStorageIfAvailable { pb in sameBytes(pa, pb) }
        }), let equal {
            return equal
        }
        return a.utf8.elementsEqual(b.utf8)
    }

    /// Whether two buffers of the same length hold the same bytes, compared eight at a time (`elementsEqual` went
    /// byte by byte: ~10 % of validating an event, which compares its `type` with an enum's and a discriminator's).
    @usableFromInline
    static func sameBytes(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        let count = a.count
        guard count == b.count else { return false }
        guard count > 0 else { return true }
        guard let pa = a.baseAddress, let pb = b.baseAddress else { return false }  // (not for a non-empty buffer)
        let ra = UnsafeRawPointer(pa)
        let rb = UnsafeRawPointer(pb)
        var offset = 0
        while offset + 8 <= count {
            if ra.loadUnaligned(fromByteOffset: offset, as: UInt64.self) != rb.loadUnaligned(fromByteOffset: offset, as: UInt64.self) { return false }
            offset += 8
        }
        while offset < count {
            if pa[offset] != pb[offset] { return false }
            offset += 1
        }
        return true
    }

    /// The member `key` of an object, or `nil`.
    @inlinable
    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    /// The string, when this is one.
    @inlinable
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The integer, when this is an integral number that fits in `Int64`.
    @inlinable
    public var int64Value: Int64? {
        if case .number(let n) = self { return n.integer }
        return nil
    }

    /// The number as a double, when this is a number.
    @inlinable
    public var doubleValue: Double? {
        if case .number(let n) = self { return n.double }
        return nil
    }

    /// The boolean, when this is one.
    @inlinable
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The members, when this is an object.
    @inlinable
    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// The elements, when this is an array.
    @inlinable
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// Whether this is `null`.
    @inlinable
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The JSON type name as JSON Schema's `type` keyword spells it.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number(let n): n.isInteger ? "integer" : "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

extension JSONValue {
    /// Serializes the value as compact JSON (object keys sorted, for stable output).
    public func serialized() -> String {
        // Bytes, not String appends: appending to a String goes scalar by scalar, and this runs for every message
        // the bridge sends (it was the largest cost of ingest).
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends this value's JSON text (UTF-8) to `out`.
    public func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let n): JSONValue.writeNumber(n, into: &out)
        case .string(let s): JSONValue.writeEscaped(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            // Sorted keys: the same value serialises to the same bytes in every process (dictionaries are not ordered).
            for (i, key) in members.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeEscaped(key, into: &out)
                out.append(UInt8(ascii: ":"))
                members[key]!.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Appends a number as `serialized()` writes it: integral values as integers, others as Swift prints doubles,
    /// non-finite ones as `null`.
    public static func writeNumber(_ number: JSONNumber, into out: inout [UInt8]) {
        if let i = number.integer {
            writeInteger(i, into: &out)
        } else if number.double.isFinite {
            out.append(contentsOf: String(number.double).utf8)
        } else {
            out.append(contentsOf: "null".utf8)
        }
    }

    /// Appends the decimal digits of `value`.
    static func writeInteger(_ value: Int64, into out: inout [UInt8]) {
        if value == 0 {
            out.append(UInt8(ascii: "0"))
            return
        }
        var magnitude = value.magnitude
        if value < 0 { out.append(UInt8(ascii: "-")) }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            while magnitude > 0 {
                buffer[19 - count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            }
            out.append(contentsOf: buffer[(20 - count)...])
        }
    }

    /// Appends `string` as a JSON string literal (UTF-8), copying the runs between escapes at once.
    public static func writeEscaped(_ string: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { bytes in
            var runStart = 0
            for i in 0..<bytes.count {
                let byte = bytes[i]
                guard byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 else { continue }
                if i > runStart { out.append(contentsOf: bytes[runStart..<i]) }
                runStart = i + 1
                switch byte {
                case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
                case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
                case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
                case UInt8(ascii: "\r"): out.append(contentsOf: #"\r"#.utf8)
                case UInt8(ascii: "\t"): out.append(contentsOf: #"\t"#.utf8)
                default:
                    let hex = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: #"\u00"#.utf8)
                    out.append(hex[Int(byte >> 4)])
                    out.append(hex[Int(byte & 0xF)])
                }
            }
            if runStart < bytes.count { out.append(contentsOf: bytes[runStart...]) }
        }
        out.append(UInt8(ascii: "\""))
    }
}

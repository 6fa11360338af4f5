/// A JSON object: members in document order. Small objects (the common case for events) are
/// searched linearly, which beats hashing for a handful of short keys; larger ones get an index.
public struct JSONObject: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    public typealias Element = (key: String, value: JSONValue)

    /// Members in insertion order (one allocation per object).
    private var entries: [Element] = []
    /// Keys in insertion order.
    public var keys: [String] { entries.map(\.key) }
    /// Values in insertion order.
    public var values: [JSONValue] { entries.map(\.value) }
    private var index: [String: Int]?
    private static let indexThreshold = 12

    /// An empty object.
    public init() {}

    /// An empty object with room for `capacity` members before it grows (the parser's objects start at a few
    /// members' room: growing 1, 2, 4, 8 was four allocations for an event's six members).
    init(reservingCapacity capacity: Int) {
        entries.reserveCapacity(capacity)
    }

    /// An object from a dictionary (keys sorted, for a stable order).
    public init(_ dictionary: [String: JSONValue]) {
        for key in dictionary.keys.sorted() { self[key] = dictionary[key] }
    }

    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        for (key, value) in elements { self[key] = value }
    }

    /// The number of members.
    public var count: Int { entries.count }
    /// Whether there are no members.
    public var isEmpty: Bool { entries.isEmpty }

    @inline(__always)
    private func position(of key: String) -> Int? {
        if let index { return index[key] }
        return entries.withUnsafeBufferPointer { entries in
            // Most look-ups name a key by the very representation the document's key has (both are the schema's
            // strings — see `KnownStrings` — or small strings of the same bytes): first one pass comparing
            // representations (the same one, the same string), then, if none was, one comparing contents.
            for i in entries.indices where entries[i].key.hasSameRepresentation(as: key) { return i }
            return Self.position(of: key, in: entries)
        }
    }

    /// The position of the key equal to `key` in `entries`, compared by contents.
    @inline(__always)
    private static func position(of key: String, in entries: UnsafeBufferPointer<Element>) -> Int? {
        // Comparing byte counts first skips most string comparisons.
        let length = key.utf8.count
        for i in entries.indices where entries[i].key.utf8.count == length && entries[i].key == key { return i }
        return nil
    }

    /// The member named `key`; setting `nil` removes it.
    public subscript(key: String) -> JSONValue? {
        get { position(of: key).map { entries[$0].value } }
        set {
            if let i = position(of: key) {
                if let newValue {
                    entries[i].value = newValue
                } else {
                    entries.remove(at: i)
                    rebuildIndex()
                }
            } else if let newValue {
                append(key, newValue)
            }
        }
    }

    /// Adds a member unless the key is present; returns false for a duplicate key.
    mutating func insertNew(_ key: String, _ value: JSONValue) -> Bool {
        // By contents only: a new key is mostly not there, and then a pass comparing representations would be wasted.
        let present = index.map { $0[key] != nil } ?? entries.withUnsafeBufferPointer { Self.position(of: key, in: $0) != nil }
        if present { return false }
        // Appended straight (the subscript's setter would look the key up a second time: the parser adds every member so).
        append(key, value)
        return true
    }

    /// Appends a member whose key is not present, and keeps the index.
    private mutating func append(_ key: String, _ value: JSONValue) {
        entries.append((key, value))
        if index != nil {
            index![key] = entries.count - 1
        } else if entries.count > Self.indexThreshold {
            rebuildIndex()
        }
    }

    private mutating func rebuildIndex() {
        guard entries.count > Self.indexThreshold else {
            index = nil
            return
        }
        var map: [String: Int] = [:]
        map.reserveCapacity(entries.count)
        for (i, entry) in entries.enumerated() { map[entry.key] = i }
        index = map
    }

    public func makeIterator() -> IndexingIterator<[Element]> {
        entries.makeIterator()
    }

    /// Member order does not matter for equality.
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for entry in lhs.entries {
            guard let other = rhs[entry.key], other == entry.value else { return false }
        }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        // Order-independent: a commutative sum of the members' hashes.
        var sum = 0
        for entry in entries {
            var h = Hasher()
            h.combine(entry.key)
            h.combine(entry.value)
            sum = sum &+ h.finalize()
        }
        hasher.combine(count)
        hasher.combine(sum)
    }
}

extension String {
    /// Whether `other` has this string's very representation (on a 64-bit platform, the two words a `String` is made
    /// of). The same representation is the same string, by value semantics: a cheap test of equality for strings
    /// that are often the very same value (a schema's names, which a parser hands out; small strings of the same
    /// bytes). Different representations may still spell the same string, so this never decides inequality.
    @usableFromInline
    @inline(__always)
    func hasSameRepresentation(as other: String) -> Bool {
        #if _pointerBitWidth(_64)
        unsafeBitCast(self, to: (UInt64, UInt64).self) == unsafeBitCast(other, to: (UInt64, UInt64).self)
        #else
        false  // (the contents decide)
        #endif
    }
}

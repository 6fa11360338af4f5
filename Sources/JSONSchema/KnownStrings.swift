/// Short ASCII strings made once and handed out again whenever a document spells one of them: the member names and
/// enum values a schema knows repeat in every event, and making a fresh `String` for each (a check that the bytes are
/// ASCII, then a copy) costs more than this look-up (parsing the contract's events: 5.5 % fewer instructions).
///
/// Immutable once made, so one table serves every parser and thread. Empty strings, strings longer than 16 bytes and
/// strings that are not ASCII are left out: a look-up compares two words and a length.
public struct KnownStrings: Sendable {
    /// A slot's key: plain words, so probing copies nothing that is reference-counted (`count` 0: empty slot).
    private struct Key {
        var head: UInt64
        var tail: UInt64
        var count: Int
    }

    /// Open addressing, a power of two long, at most a quarter full; `strings[i]` is the string of `keys[i]`.
    private let keys: [Key]
    private let strings: [String]
    private let mask: Int
    /// Whether there are none (a parser then does not look).
    let isEmpty: Bool

    /// The longest string kept: two words (the look-up's layout, not a setting).
    static let maxLength = 16

    /// No strings: every look-up misses.
    public static let none = KnownStrings([])

    /// A table of `strings` (empty ones, those longer than 16 bytes and those not ASCII are left out; repeats are kept
    /// once).
    public init(_ strings: some Sequence<String>) {
        let kept = Set(strings.filter { (1...Self.maxLength).contains($0.utf8.count) && $0.utf8.allSatisfy { $0 < 0x80 } })
        var size = 8
        while size < kept.count * 4 { size *= 2 }
        var keys = [Key](repeating: Key(head: 0, tail: 0, count: 0), count: size)
        var table = [String](repeating: "", count: size)
        for string in kept.sorted() {
            let words = Array(string.utf8).withUnsafeBufferPointer { Self.words($0) }
            var index = Self.hash(words.head, words.tail, words.count) & (size - 1)
            while keys[index].count != 0 { index = (index + 1) & (size - 1) }
            keys[index] = Key(head: words.head, tail: words.tail, count: words.count)
            table[index] = string
        }
        self.keys = keys
        self.strings = table
        self.mask = size - 1
        self.isEmpty = kept.isEmpty
    }

    /// The known string that `document[start ..< start + count]` spells, or `nil`. The range must lie in `document`.
    @inline(__always)
    func string(in document: UnsafeBufferPointer<UInt8>, from start: Int, count: Int) -> String? {
        guard count <= Self.maxLength, count > 0 else { return nil }
        assert(start >= 0 && start + count <= document.count)
        let (head, tail) = Self.words(in: document, from: start, count: count)
        let found: Int? = keys.withUnsafeBufferPointer { keys in
            var index = Self.hash(head, tail, count) & mask
            while keys[index].count != 0 {
                let key = keys[index]
                if key.head == head, key.tail == tail, key.count == count { return index }
                index = (index + 1) & mask
            }
            return nil
        }
        return found.map { strings[$0] }
    }

    /// The first eight bytes of `document[start ..< start + count]` and the next eight, little-endian, zero past its
    /// end (0 – 16 bytes; the range must lie in `document`).
    @inline(__always)
    private static func words(in document: UnsafeBufferPointer<UInt8>, from start: Int, count: Int) -> (head: UInt64, tail: UInt64) {
        assert(count <= maxLength && start >= 0 && start + count <= document.count)
        if start + 16 <= document.count, let base = document.baseAddress {
            // Two loads, the bytes past the string masked off (they are the document's, so there to read).
            let raw = UnsafeRawPointer(base + start)
            let first = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
            let second = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            let head = count >= 8 ? first : first & ((1 &<< UInt64(8 * count)) &- 1)
            let tail = count <= 8 ? 0 : count == 16 ? second : second & ((1 &<< UInt64(8 * (count - 8))) &- 1)
            return (head, tail)
        }
        let words = Self.words(UnsafeBufferPointer(rebasing: document[start..<(start + count)]))
        return (words.head, words.tail)
    }

    /// The first eight bytes and the next eight, little-endian, zero past the end (1 – 16 bytes).
    @inline(__always)
    private static func words(_ bytes: UnsafeBufferPointer<UInt8>) -> (head: UInt64, tail: UInt64, count: Int) {
        var head: UInt64 = 0
        var tail: UInt64 = 0
        for i in 0..<min(8, bytes.count) { head |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        if bytes.count > 8 {
            for i in 8..<bytes.count { tail |= UInt64(bytes[i]) << (8 * UInt64(i - 8)) }
        }
        return (head, tail, bytes.count)
    }

    @inline(__always)
    private static func hash(_ head: UInt64, _ tail: UInt64, _ count: Int) -> Int {
        let mixed = (head &* 0x9E37_79B9_7F4A_7C15) ^ (tail &* 0xC2B2_AE3D_27D4_EB4F) ^ UInt64(count)
        return Int(truncatingIfNeeded: mixed >> 40)
    }
}

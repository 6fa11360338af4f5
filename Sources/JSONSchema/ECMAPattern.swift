/// A compiled ECMA-262 (unicode mode) pattern for the common subset: literals, `.`, classes,
/// `\d \w \s \b` and their negations, groups, alternation, greedy and lazy quantifiers, anchors.
/// It runs as a backtracking program with a visited set, so matching is O(pattern × input) even
/// for hostile input. Lookaround, back-references, named groups and `\p{…}` are not parsed
/// (`ECMARegex` then falls back to ICU).
struct ECMAPattern: Sendable {
    enum Instruction: Sendable {
        case scalar(UInt32)
        case any
        case set(Int)  // index into `sets`
        case split(Int, Int)  // try first, then second
        case jump(Int)
        case lineStart, lineEnd
        case wordBoundary(Bool)  // true: \b, false: \B
        case match
    }

    struct ScalarSet: Sendable {
        var ranges: [ClosedRange<UInt32>]
        var negated: Bool
        /// Membership of the 128 ASCII code points, precomputed.
        var ascii: (UInt64, UInt64) = (0, 0)

        init(ranges: [ClosedRange<UInt32>], negated: Bool) {
            self.ranges = ranges
            self.negated = negated
            for c in UInt32(0)..<128 where containsSlow(c) {
                if c < 64 { ascii.0 |= 1 << UInt64(c) } else { ascii.1 |= 1 << UInt64(c - 64) }
            }
        }

        @inline(__always)
        func contains(_ c: UInt32) -> Bool {
            if c < 64 { return ascii.0 & (1 << UInt64(c)) != 0 }
            if c < 128 { return ascii.1 & (1 << UInt64(c - 64)) != 0 }
            return containsSlow(c)
        }

        func containsSlow(_ c: UInt32) -> Bool {
            var found = false
            for r in ranges where r.contains(c) {
                found = true
                break
            }
            return found != negated
        }
    }

    let program: [Instruction]
    let sets: [ScalarSet]
    let anchoredAtStart: Bool
    /// `^literal[class]{m,n}$`, the shape of most identifier patterns: matched directly.
    let anchoredRun: (prefix: [UInt32], set: Int, min: Int, max: Int?)?

    /// Parses `source`; nil when it uses syntax outside the subset (or is invalid).
    init?(_ source: String) {
        var parser = PatternParser(Array(source.unicodeScalars))
        guard let tree = parser.parseAlternation(), parser.atEnd else { return nil }
        var emitter = Emitter()
        guard emitter.emit(tree) else { return nil }
        emitter.program.append(.match)
        program = emitter.program
        sets = parser.sets
        anchoredRun = Self.anchoredRun(tree)
        if case .concat(let items) = tree, case .lineStart? = items.first { anchoredAtStart = true } else if case .lineStart = tree {
            anchoredAtStart = true
        } else {
            anchoredAtStart = false
        }
    }

    private static func anchoredRun(_ tree: PatternNode) -> (prefix: [UInt32], set: Int, min: Int, max: Int?)? {
        guard case .concat(let items) = tree, items.count >= 3, case .lineStart = items.first!, case .lineEnd = items.last!,
            case .repetition(.set(let set), let min, let max, _) = items[items.count - 2]
        else { return nil }
        var prefix: [UInt32] = []
        for item in items[1..<(items.count - 2)] {
            guard case .scalar(let c) = item else { return nil }
            prefix.append(c)
        }
        return (prefix, set, min, max)
    }

    /// Whether `string` contains a match.
    func matches(_ string: String) -> Bool {
        if let run = anchoredRun {
            var count = 0
            var position = 0
            let set = sets[run.set]
            // ASCII (the usual identifier): walk the bytes, no decoding.
            if let result = string.utf8.withContiguousStorageIfAvailable({ bytes -> Bool? in
                for byte in bytes {
                    if byte >= 0x80 { return nil }
                    if position < run.prefix.count {
                        guard UInt32(byte) == run.prefix[position] else { return false }
                    } else {
                        guard set.contains(UInt32(byte)) else { return false }
                        count += 1
                        if let max = run.max, count > max { return false }
                    }
                    position += 1
                }
                return position >= run.prefix.count && count >= run.min
            }), let result {
                return result
            }
            count = 0
            position = 0
            for scalar in string.unicodeScalars {
                if position < run.prefix.count {
                    guard scalar.value == run.prefix[position] else { return false }
                } else {
                    guard sets[run.set].contains(scalar.value) else { return false }
                    count += 1
                    if let max = run.max, count > max { return false }
                }
                position += 1
            }
            return position >= run.prefix.count && count >= run.min
        }
        var ascii = true
        for byte in string.utf8 where byte >= 0x80 {
            ascii = false
            break
        }
        if ascii {
            var text = string
            return text.withUTF8 { bytes in search(count: bytes.count) { UInt32(bytes[$0]) } }
        }
        let scalars = string.unicodeScalars.map(\.value)
        return search(count: scalars.count) { scalars[$0] }
    }

    private func search(count: Int, at: (Int) -> UInt32) -> Bool {
        let states = program.count * (count + 1)
        let words = (states + 63) / 64
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: words) { visited in
            visited.initialize(repeating: 0)
            let lastStart = anchoredAtStart ? 0 : count
            for start in 0...lastStart where run(from: start, count: count, at: at, visited: visited) {
                return true
            }
            return false
        }
    }

    private func isWord(_ c: UInt32) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
    }

    private func isLineTerminator(_ c: UInt32) -> Bool { c == 0x0A || c == 0x0D || c == 0x2028 || c == 0x2029 }

    private func run(from start: Int, count: Int, at: (Int) -> UInt32, visited: UnsafeMutableBufferPointer<UInt64>) -> Bool {
        // An explicit stack of (pc, position) to try; a failed state never needs a second visit.
        var stack: [(Int, Int)] = [(0, start)]
        while let (startPC, startPos) = stack.popLast() {
            var pc = startPC
            var pos = startPos
            while true {
                let state = pc * (count + 1) + pos
                let (word, bit) = (state >> 6, UInt64(1) << UInt64(state & 63))
                if visited[word] & bit != 0 { break }
                visited[word] |= bit
                switch program[pc] {
                case .scalar(let c):
                    guard pos < count, at(pos) == c else { break }
                    pc += 1
                    pos += 1
                    continue
                case .any:
                    guard pos < count, !isLineTerminator(at(pos)) else { break }
                    pc += 1
                    pos += 1
                    continue
                case .set(let i):
                    guard pos < count, sets[i].contains(at(pos)) else { break }
                    pc += 1
                    pos += 1
                    continue
                case .split(let first, let second):
                    stack.append((second, pos))
                    pc = first
                    continue
                case .jump(let target):
                    pc = target
                    continue
                case .lineStart:
                    guard pos == 0 else { break }
                    pc += 1
                    continue
                case .lineEnd:
                    guard pos == count else { break }
                    pc += 1
                    continue
                case .wordBoundary(let expected):
                    let before = pos > 0 && isWord(at(pos - 1))
                    let after = pos < count && isWord(at(pos))
                    guard (before != after) == expected else { break }
                    pc += 1
                    continue
                case .match:
                    return true
                }
                break
            }
        }
        return false
    }
}

/// The parsed pattern.
private indirect enum PatternNode {
    case empty
    case scalar(UInt32)
    case any
    case set(Int)
    case lineStart, lineEnd
    case wordBoundary(Bool)
    case concat([PatternNode])
    case alternation([PatternNode])
    case repetition(PatternNode, min: Int, max: Int?, greedy: Bool)
}

private struct PatternParser {
    let chars: [Unicode.Scalar]
    var i = 0
    var sets: [ECMAPattern.ScalarSet] = []

    init(_ chars: [Unicode.Scalar]) { self.chars = chars }

    var atEnd: Bool { i >= chars.count }
    func peek(_ offset: Int = 0) -> Unicode.Scalar? { i + offset < chars.count ? chars[i + offset] : nil }

    static let digit: [ClosedRange<UInt32>] = [0x30...0x39]
    static let word: [ClosedRange<UInt32>] = [0x30...0x39, 0x41...0x5A, 0x5F...0x5F, 0x61...0x7A]
    static let space: [ClosedRange<UInt32>] = [
        0x09...0x0D, 0x20...0x20, 0xA0...0xA0, 0x1680...0x1680, 0x2000...0x200A, 0x2028...0x2029, 0x202F...0x202F, 0x205F...0x205F,
        0x3000...0x3000, 0xFEFF...0xFEFF,
    ]

    mutating func addSet(_ ranges: [ClosedRange<UInt32>], negated: Bool) -> PatternNode {
        sets.append(.init(ranges: ranges, negated: negated))
        return .set(sets.count - 1)
    }

    mutating func parseAlternation() -> PatternNode? {
        var branches: [PatternNode] = []
        while true {
            guard let branch = parseConcat() else { return nil }
            branches.append(branch)
            if peek() == "|" {
                i += 1
                continue
            }
            break
        }
        return branches.count == 1 ? branches[0] : .alternation(branches)
    }

    mutating func parseConcat() -> PatternNode? {
        var items: [PatternNode] = []
        while let c = peek(), c != "|", c != ")" {
            guard var atom = parseAtom() else { return nil }
            if let quantified = parseQuantifier(atom) {
                atom = quantified
            } else if isQuantifierStart() {
                return nil
            }
            items.append(atom)
        }
        return items.isEmpty ? .empty : (items.count == 1 ? items[0] : .concat(items))
    }

    func isQuantifierStart() -> Bool {
        guard let c = peek() else { return false }
        return c == "*" || c == "+" || c == "?" || (c == "{" && braceQuantifier() != nil)
    }

    /// `{n}`, `{n,}`, `{n,m}` at the cursor, with its length.
    func braceQuantifier() -> (min: Int, max: Int?, length: Int)? {
        guard peek() == "{" else { return nil }
        var j = i + 1
        func number() -> Int? {
            let start = j
            while j < chars.count, chars[j].properties.numericType == .decimal, chars[j].isASCII { j += 1 }
            guard j > start, j - start < 7 else { return nil }
            return Int(String(String.UnicodeScalarView(chars[start..<j])))
        }
        guard let low = number() else { return nil }
        var high: Int? = low
        if j < chars.count, chars[j] == "," {
            j += 1
            high = j < chars.count && chars[j] == "}" ? nil : number()
            if high == nil && !(j < chars.count && chars[j] == "}") { return nil }
        }
        guard j < chars.count, chars[j] == "}" else { return nil }
        return (low, high, j - i + 1)
    }

    mutating func parseQuantifier(_ atom: PatternNode) -> PatternNode? {
        var min = 0
        var max: Int?
        switch peek() {
        case "*": i += 1
        case "+":
            min = 1
            i += 1
        case "?":
            max = 1
            i += 1
        case "{":
            guard let q = braceQuantifier() else { return nil }
            if let high = q.max, high < q.min { return nil }
            (min, max) = (q.min, q.max)
            i += q.length
        default: return nil
        }
        var greedy = true
        if peek() == "?" {
            greedy = false
            i += 1
        }
        switch atom {
        case .lineStart, .lineEnd, .wordBoundary: return nil  // quantified assertions: leave to ICU
        default: return .repetition(atom, min: min, max: max, greedy: greedy)
        }
    }

    mutating func parseAtom() -> PatternNode? {
        guard let c = peek() else { return nil }
        i += 1
        switch c {
        case "^": return .lineStart
        case "$": return .lineEnd
        case ".": return .any
        case "(":
            if peek() == "?" {
                guard peek(1) == ":" else { return nil }  // lookaround and named groups: not here
                i += 2
            }
            guard let inner = parseAlternation(), peek() == ")" else { return nil }
            i += 1
            return inner
        case "[": return parseClass()
        case "\\": return parseEscape(inClass: false).flatMap { escape in
                switch escape {
                case .scalar(let v): return .scalar(v)
                case .ranges(let r, let negated): return addSet(r, negated: negated)
                case .boundary(let b): return .wordBoundary(b)
                }
            }
        case "*", "+", "?", ")", "]", "{", "}": return nil  // ECMA unicode mode: must be escaped
        default: return .scalar(c.value)
        }
    }

    enum Escape {
        case scalar(UInt32)
        case ranges([ClosedRange<UInt32>], negated: Bool)
        case boundary(Bool)
    }

    mutating func hex(_ digits: Int) -> UInt32? {
        guard i + digits <= chars.count else { return nil }
        let text = String(String.UnicodeScalarView(chars[i..<(i + digits)]))
        guard let v = UInt32(text, radix: 16) else { return nil }
        i += digits
        return v
    }

    mutating func parseEscape(inClass: Bool) -> Escape? {
        guard let c = peek() else { return nil }
        i += 1
        switch c {
        case "d": return .ranges(Self.digit, negated: false)
        case "D": return .ranges(Self.digit, negated: true)
        case "w": return .ranges(Self.word, negated: false)
        case "W": return .ranges(Self.word, negated: true)
        case "s": return .ranges(Self.space, negated: false)
        case "S": return .ranges(Self.space, negated: true)
        case "b": return inClass ? .scalar(0x08) : .boundary(true)
        case "B": return inClass ? nil : .boundary(false)
        case "n": return .scalar(0x0A)
        case "r": return .scalar(0x0D)
        case "t": return .scalar(0x09)
        case "f": return .scalar(0x0C)
        case "v": return .scalar(0x0B)
        case "0":
            if let next = peek(), next.properties.numericType == .decimal { return nil }
            return .scalar(0)
        case "c":
            guard let letter = peek(), letter.isASCII, letter.properties.isAlphabetic else { return nil }
            i += 1
            return .scalar(letter.value % 32)
        case "x": return hex(2).map { .scalar($0) }
        case "u":
            if peek() == "{" {
                i += 1
                let start = i
                while let d = peek(), d != "}" { i += 1 }
                guard peek() == "}", i > start, i - start <= 6,
                    let v = UInt32(String(String.UnicodeScalarView(chars[start..<i])), radix: 16), v <= 0x10FFFF
                else { return nil }
                i += 1
                return .scalar(v)
            }
            guard let v = hex(4) else { return nil }
            if (0xD800...0xDBFF).contains(v), peek() == "\\", peek(1) == "u" {
                let save = i
                i += 2
                if let low = hex(4), (0xDC00...0xDFFF).contains(low) { return .scalar(0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)) }
                i = save
            }
            return .scalar(v)
        case "-" where inClass: return .scalar(0x2D)
        default:
            // Unicode mode allows only syntax characters (and "/") to be escaped literally.
            guard "^$\\.*+?()[]{}|/".unicodeScalars.contains(c) else { return nil }
            return .scalar(c.value)
        }
    }

    mutating func parseClass() -> PatternNode? {
        var negated = false
        if peek() == "^" {
            negated = true
            i += 1
        }
        var ranges: [ClosedRange<UInt32>] = []
        var negatedParts: [[ClosedRange<UInt32>]] = []
        while let c = peek(), c != "]" {
            i += 1
            var low: UInt32
            if c == "\\" {
                guard let escape = parseEscape(inClass: true) else { return nil }
                switch escape {
                case .scalar(let v): low = v
                case .ranges(let r, let n):
                    if n { negatedParts.append(r) } else { ranges += r }
                    continue
                case .boundary: return nil
                }
            } else if c == "[" {
                return nil  // nested classes are not ECMA syntax in u-mode without v; leave to ICU
            } else {
                low = c.value
            }
            if peek() == "-", let after = peek(1), after != "]" {
                i += 1
                var high: UInt32
                let h = peek()!
                i += 1
                if h == "\\" {
                    guard case .scalar(let v)? = parseEscape(inClass: true) else { return nil }
                    high = v
                } else {
                    high = h.value
                }
                guard low <= high else { return nil }
                ranges.append(low...high)
                low = 0
                continue
            }
            ranges.append(low...low)
        }
        guard peek() == "]" else { return nil }
        i += 1
        if !negatedParts.isEmpty {
            // [\D…] and friends: complement the negated classes into explicit ranges.
            for part in negatedParts { ranges += Self.complement(part) }
        }
        return addSet(ranges, negated: negated)
    }

    static func complement(_ ranges: [ClosedRange<UInt32>]) -> [ClosedRange<UInt32>] {
        var result: [ClosedRange<UInt32>] = []
        var next: UInt32 = 0
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if r.lowerBound > next { result.append(next...(r.lowerBound - 1)) }
            next = max(next, r.upperBound + 1)
        }
        if next <= 0x10FFFF { result.append(next...0x10FFFF) }
        return result
    }
}

/// Turns the tree into the backtracking program.
private struct Emitter {
    var program: [ECMAPattern.Instruction] = []
    static let maxProgram = 20_000

    mutating func emit(_ node: PatternNode) -> Bool {
        guard program.count < Self.maxProgram else { return false }
        switch node {
        case .empty: return true
        case .scalar(let c): program.append(.scalar(c))
        case .any: program.append(.any)
        case .set(let i): program.append(.set(i))
        case .lineStart: program.append(.lineStart)
        case .lineEnd: program.append(.lineEnd)
        case .wordBoundary(let b): program.append(.wordBoundary(b))
        case .concat(let items):
            for item in items where !emit(item) { return false }
        case .alternation(let branches):
            var jumps: [Int] = []
            for (n, branch) in branches.enumerated() {
                if n < branches.count - 1 {
                    let split = program.count
                    program.append(.split(split + 1, -1))
                    guard emit(branch) else { return false }
                    jumps.append(program.count)
                    program.append(.jump(-1))
                    program[split] = .split(split + 1, program.count)
                } else {
                    guard emit(branch) else { return false }
                }
            }
            for j in jumps { program[j] = .jump(program.count) }
        case .repetition(let atom, let min, let max, let greedy):
            for _ in 0..<min where !emit(atom) { return false }
            if let max {
                // (atom (atom (…)?)?)? — nested optionals, linear to backtrack.
                var splits: [Int] = []
                for _ in min..<max {
                    splits.append(program.count)
                    program.append(.split(-1, -1))
                    guard emit(atom) else { return false }
                }
                let end = program.count
                for s in splits { program[s] = greedy ? .split(s + 1, end) : .split(end, s + 1) }
            } else {
                let loop = program.count
                program.append(.split(-1, -1))
                guard emit(atom) else { return false }
                program.append(.jump(loop))
                let end = program.count
                program[loop] = greedy ? .split(loop + 1, end) : .split(end, loop + 1)
            }
        }
        return true
    }
}

/// Checkers for the formats this validator can assert, written from their RFCs.
enum FormatCheckers {
    // MARK: duration (RFC 3339 appendix A)

    static func isDuration(_ s: String) -> Bool {
        var chars = Array(s.utf8)[...]
        guard chars.popFirst() == UInt8(ascii: "P"), !chars.isEmpty else { return false }
        /// Reads `digits unit` pairs; returns the units in order.
        func components(_ part: ArraySlice<UInt8>) -> [UInt8]? {
            var units: [UInt8] = []
            var digits = 0
            for c in part {
                if c >= 0x30 && c <= 0x39 {
                    digits += 1
                } else {
                    guard digits > 0 else { return nil }
                    units.append(c)
                    digits = 0
                }
            }
            return digits == 0 ? units : nil
        }
        if let t = chars.firstIndex(of: UInt8(ascii: "T")) {
            guard let date = components(chars[..<t]), let time = components(chars[(t + 1)...]), !time.isEmpty else { return false }
            return isOrdered(date, ["Y", "M", "D"]) && isOrdered(time, ["H", "M", "S"])
        }
        guard let date = components(chars), !date.isEmpty else { return false }
        return date == [UInt8(ascii: "W")] || isOrdered(date, ["Y", "M", "D"])
    }

    /// Units appear in order, and without gaps between the first and the last (P1Y2D lacks M).
    private static func isOrdered(_ units: [UInt8], _ order: [Character]) -> Bool {
        let positions = units.map { u in order.firstIndex(of: Character(UnicodeScalar(u))) }
        guard !positions.contains(nil) else { return false }
        let p = positions.map { $0! }
        return zip(p, p.dropFirst()).allSatisfy { $1 == $0 + 1 }
    }

    // MARK: uuid (RFC 9562 textual form)
    static func isUUID(_ s: String) -> Bool {
        let bytes = Array(s.utf8)
        guard bytes.count == 36 else { return false }
        for (i, b) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(i) {
                if b != UInt8(ascii: "-") { return false }
            } else if !(b >= 0x30 && b <= 0x39 || b >= 0x41 && b <= 0x46 || b >= 0x61 && b <= 0x66) {
                return false
            }
        }
        return true
    }

    // MARK: IP addresses

    static func isIPv4(_ s: Substring) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        return parts.allSatisfy { part in
            guard !part.isEmpty, part.count <= 3, part.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
            if part.count > 1 && part.first == "0" { return false }
            return Int(part)! <= 255
        }
    }

    static func isIPv6(_ s: Substring) -> Bool {
        guard !s.isEmpty, s.utf8.allSatisfy({ $0 < 0x80 }) else { return false }
        var groups = 0
        var text = s
        var hasIPv4 = false
        if let lastColon = text.lastIndex(of: ":"), text[text.index(after: lastColon)...].contains(".") {
            guard isIPv4(text[text.index(after: lastColon)...]) else { return false }
            hasIPv4 = true
            text = text[...lastColon]
            if !text.hasSuffix("::") { text = text.dropLast() }
            groups += 2
        }
        let halves = text.split(separator: "::", omittingEmptySubsequences: false)
        guard halves.count <= 2 else { return false }
        func hexGroups(_ part: Substring) -> Int? {
            if part.isEmpty { return 0 }
            let items = part.split(separator: ":", omittingEmptySubsequences: false)
            for item in items {
                guard (1...4).contains(item.count), item.utf8.allSatisfy({ isHex($0) }) else { return nil }
            }
            return items.count
        }
        if halves.count == 2 {
            guard let a = hexGroups(halves[0]), let b = hexGroups(halves[1]) else { return false }
            return a + b + groups <= 7
        }
        guard let a = hexGroups(halves[0]) else { return false }
        _ = hasIPv4
        return a + groups == 8
    }

    static func isHex(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66) }

    // MARK: URIs (RFC 3986)

    private static let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)
    private static let subDelims = Set("!$&'()*+,;=".utf8)

    /// Every character is unreserved, a sub-delimiter, one of `extra`, or a valid %-escape.
    private static func isEncoded(_ s: Substring, extra: String) -> Bool {
        let allowed = Set(extra.utf8)
        var bytes = s.utf8[...]
        while let c = bytes.popFirst() {
            if c == UInt8(ascii: "%") {
                guard let h = bytes.popFirst(), let l = bytes.popFirst(), isHex(h), isHex(l) else { return false }
            } else if !(unreserved.contains(c) || subDelims.contains(c) || allowed.contains(c)) {
                return false
            }
        }
        return true
    }

    static func isURI(_ s: String) -> Bool {
        guard let colon = s.firstIndex(of: ":") else { return false }
        let scheme = s[..<colon]
        guard let first = scheme.utf8.first, (first | 0x20) >= 0x61 && (first | 0x20) <= 0x7A,
            scheme.utf8.allSatisfy({ unreserved.contains($0) && $0 != UInt8(ascii: "_") && $0 != UInt8(ascii: "~") || $0 == UInt8(ascii: "+") })
        else { return false }
        return isRelativePart(s[s.index(after: colon)...])
    }

    static func isURIReference(_ s: String) -> Bool {
        if let colon = s.firstIndex(of: ":") {
            let beforeColon = s[..<colon]
            if !beforeColon.contains("/") && !beforeColon.contains("?") && !beforeColon.contains("#") { return isURI(s) }
        }
        return isRelativePart(Substring(s))
    }

    /// hier-part / relative-part, then `?query` and `#fragment`.
    private static func isRelativePart(_ s: Substring) -> Bool {
        var rest = s
        if let hash = rest.firstIndex(of: "#") {
            guard isEncoded(rest[rest.index(after: hash)...], extra: ":@/?") else { return false }
            rest = rest[..<hash]
        }
        if let question = rest.firstIndex(of: "?") {
            guard isEncoded(rest[rest.index(after: question)...], extra: ":@/?") else { return false }
            rest = rest[..<question]
        }
        if rest.hasPrefix("//") {
            let afterSlashes = rest.dropFirst(2)
            let slash = afterSlashes.firstIndex(of: "/") ?? afterSlashes.endIndex
            guard isAuthority(afterSlashes[..<slash]) else { return false }
            rest = afterSlashes[slash...]
        }
        return isEncoded(rest, extra: ":@/")
    }

    private static func isAuthority(_ s: Substring) -> Bool {
        var host = s
        if let at = s.firstIndex(of: "@") {
            guard isEncoded(s[..<at], extra: ":") else { return false }
            host = s[s.index(after: at)...]
        }
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            let literal = host[host.index(after: host.startIndex)..<close]
            guard isIPv6(literal) || (literal.first == "v" || literal.first == "V") else { return false }
            let port = host[host.index(after: close)...]
            return port.isEmpty || (port.first == ":" && port.dropFirst().utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 })
        }
        if let colon = host.lastIndex(of: ":") {
            guard host[host.index(after: colon)...].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
            host = host[..<colon]
        }
        return isEncoded(host, extra: "")
    }

    // MARK: email (RFC 5321 mailbox)

    static func isEmail(_ s: String) -> Bool {
        guard let at = s.lastIndex(of: "@") else { return false }
        let local = s[..<at]
        let domain = s[s.index(after: at)...]
        guard !local.isEmpty, !domain.isEmpty else { return false }
        if local.hasPrefix("\"") {
            guard local.count >= 2, local.hasSuffix("\"") else { return false }
            var escaped = false
            for c in local.dropFirst().dropLast().unicodeScalars {
                if escaped { escaped = false; continue }
                if c == "\\" { escaped = true; continue }
                if c == "\"" || c.value < 0x20 { return false }
            }
            if escaped { return false }
        } else {
            let atext = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~".utf8)
            guard local.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy(atext.contains) }) else {
                return false
            }
        }
        if domain.hasPrefix("[") && domain.hasSuffix("]") {
            let literal = domain.dropFirst().dropLast()
            if literal.hasPrefix("IPv6:") { return isIPv6(literal.dropFirst(5)) }
            return isIPv4(literal)
        }
        return isHostname(String(domain))
    }

    // MARK: hostname (RFC 1123, with IDNA A-labels checked per RFC 5890–5892)

    static func isHostname(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 253, s.utf8.allSatisfy({ $0 < 0x80 }) else { return false }
        return s.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            guard !label.isEmpty, label.utf8.count <= 63, label.first != "-", label.last != "-" else { return false }
            guard label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else { return false }
            if label.lowercased().hasPrefix("xn--") { return isALabel(label.dropFirst(4)) }
            return true
        }
    }

    private static func isALabel(_ encoded: Substring) -> Bool {
        guard let decoded = Punycode.decode(String(encoded)), !decoded.isEmpty else { return false }
        let scalars = decoded
        if scalars.count >= 4, scalars[2] == "-", scalars[3] == "-" { return false }
        if let first = scalars.first {
            switch first.properties.generalCategory {
            case .nonspacingMark, .spacingMark, .enclosingMark: return false
            default: break
            }
        }
        let disallowed: Set<UInt32> = [0x0640, 0x07FA, 0x302E, 0x302F, 0x3031, 0x3032, 0x3033, 0x3034, 0x3035, 0x303B]
        var hasArabicIndic = false
        var hasExtendedArabicIndic = false
        for (i, c) in scalars.enumerated() {
            if disallowed.contains(c.value) { return false }
            let before = i > 0 ? scalars[i - 1] : nil
            let after = i + 1 < scalars.count ? scalars[i + 1] : nil
            switch c.value {
            case 0x00B7:  // MIDDLE DOT: between two 'l'
                guard before == "l", after == "l" else { return false }
            case 0x0375:  // GREEK LOWER NUMERAL SIGN (KERAIA): followed by Greek
                guard let after, isGreek(after) else { return false }
            case 0x05F3, 0x05F4:  // HEBREW GERESH / GERSHAYIM: preceded by Hebrew
                guard let before, isHebrew(before) else { return false }
            case 0x30FB:  // KATAKANA MIDDLE DOT: some Hiragana, Katakana or Han in the label
                guard scalars.contains(where: { $0.value != 0x30FB && isJapanese($0) }) else { return false }
            case 0x200D:  // ZERO WIDTH JOINER: after a virama
                guard let before, before.properties.canonicalCombiningClass == .virama else { return false }
            case 0x0660...0x0669: hasArabicIndic = true
            case 0x06F0...0x06F9: hasExtendedArabicIndic = true
            default: break
            }
        }
        return !(hasArabicIndic && hasExtendedArabicIndic)
    }

    private static func isGreek(_ c: Unicode.Scalar) -> Bool { (0x0370...0x03FF).contains(c.value) || (0x1F00...0x1FFF).contains(c.value) }
    private static func isHebrew(_ c: Unicode.Scalar) -> Bool { (0x0590...0x05FF).contains(c.value) || (0xFB1D...0xFB4F).contains(c.value) }
    private static func isJapanese(_ c: Unicode.Scalar) -> Bool {
        [0x3040...0x309F, 0x30A0...0x30FF, 0x31F0...0x31FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xF900...0xFAFF, 0x20000...0x2A6DF]
            .contains { $0.contains(c.value) }
    }

    // MARK: json-pointer (RFC 6901)

    static func isJSONPointer(_ s: String) -> Bool {
        guard s.isEmpty || s.hasPrefix("/") else { return false }
        var bytes = s.utf8[...]
        while let c = bytes.popFirst() {
            if c == UInt8(ascii: "~") {
                guard let next = bytes.popFirst(), next == UInt8(ascii: "0") || next == UInt8(ascii: "1") else { return false }
            }
        }
        return true
    }
}

/// RFC 3492 Punycode decoding (for IDNA A-labels).
enum Punycode {
    static func decode(_ input: String) -> [Unicode.Scalar]? {
        let base = 36, tMin = 1, tMax = 26, skew = 38, damp = 700
        var output: [Unicode.Scalar] = []
        var chars = Array(input.lowercased().unicodeScalars)
        if let delimiter = chars.lastIndex(of: "-") {
            output = Array(chars[..<delimiter])
            guard output.allSatisfy({ $0.isASCII }) else { return nil }
            chars = Array(chars[(delimiter + 1)...])
        }
        var n = 128, i = 0, bias = 72
        var index = 0
        while index < chars.count {
            let oldI = i
            var w = 1
            var k = base
            while true {
                guard index < chars.count else { return nil }
                let c = chars[index].value
                index += 1
                let digit: Int
                switch c {
                case 0x61...0x7A: digit = Int(c - 0x61)
                case 0x30...0x39: digit = Int(c - 0x30) + 26
                default: return nil
                }
                guard digit <= (Int.max - i) / w else { return nil }
                i += digit * w
                let t = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
                if digit < t { break }
                w *= base - t
                k += base
            }
            var delta = oldI == 0 ? (i - oldI) / damp : (i - oldI) / 2
            delta += delta / (output.count + 1)
            var kk = 0
            while delta > ((base - tMin) * tMax) / 2 {
                delta /= base - tMin
                kk += base
            }
            bias = kk + (base - tMin + 1) * delta / (delta + skew)
            n += i / (output.count + 1)
            i %= output.count + 1
            guard let scalar = Unicode.Scalar(n) else { return nil }
            output.insert(scalar, at: i)
            i += 1
        }
        return output
    }
}

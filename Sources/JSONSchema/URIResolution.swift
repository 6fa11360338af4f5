/// Minimal RFC 3986 reference resolution, enough for `$id` and `$ref` (no network is ever used).
enum URIReference {
    /// Splits `uri` into the part before `#` and the fragment (without `#`), if any.
    static func splitFragment(_ uri: String) -> (base: String, fragment: String?) {
        guard let hash = uri.firstIndex(of: "#") else { return (uri, nil) }
        return (String(uri[..<hash]), String(uri[uri.index(after: hash)...]))
    }

    static func hasScheme(_ reference: String) -> Bool {
        guard let colon = reference.firstIndex(of: ":") else { return false }
        let scheme = reference[..<colon]
        guard let first = scheme.first, first.isLetter else { return false }
        return scheme.allSatisfy { $0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == "." }
    }

    /// Resolves `reference` against `base` (RFC 3986 §5.2, without query subtleties).
    static func resolve(_ reference: String, against base: String) -> String {
        if reference.isEmpty { return splitFragment(base).base }
        if hasScheme(reference) { return normalize(reference) }
        let baseNoFragment = splitFragment(base).base
        if reference.hasPrefix("#") { return baseNoFragment + reference }
        // Split base into scheme://authority and path.
        var prefix = ""
        var path = baseNoFragment
        if let schemeEnd = baseNoFragment.range(of: "://") {
            let afterScheme = baseNoFragment[schemeEnd.upperBound...]
            let slash = afterScheme.firstIndex(of: "/") ?? afterScheme.endIndex
            prefix = String(baseNoFragment[..<slash])
            path = String(baseNoFragment[slash...])
        } else if let colon = baseNoFragment.firstIndex(of: ":"), hasScheme(baseNoFragment) {
            prefix = String(baseNoFragment[...colon])
            path = String(baseNoFragment[baseNoFragment.index(after: colon)...])
        }
        if reference.hasPrefix("//") {
            let scheme = prefix.split(separator: ":").first.map(String.init) ?? ""
            return normalize(scheme + ":" + reference)
        }
        let merged: String
        if reference.hasPrefix("/") {
            merged = reference
        } else {
            let directory = path.lastIndex(of: "/").map { String(path[...$0]) } ?? (prefix.isEmpty ? "" : "/")
            merged = directory + reference
        }
        return prefix + removeDotSegments(merged)
    }

    static func normalize(_ uri: String) -> String {
        guard let schemeEnd = uri.range(of: "://") else { return uri }
        let afterScheme = uri[schemeEnd.upperBound...]
        guard let slash = afterScheme.firstIndex(of: "/") else { return uri }
        let (path, fragment) = splitFragment(String(uri[slash...]))
        return String(uri[..<slash]) + removeDotSegments(path) + (fragment.map { "#" + $0 } ?? "")
    }

    static func removeDotSegments(_ path: String) -> String {
        let (pathOnly, fragment) = splitFragment(path)
        var output: [Substring] = []
        let segments = pathOnly.split(separator: "/", omittingEmptySubsequences: false)
        for (i, segment) in segments.enumerated() {
            if segment == "." { if i == segments.count - 1 { output.append("") }; continue }
            if segment == ".." {
                if output.count > 1 { output.removeLast() }
                if i == segments.count - 1 { output.append("") }
                continue
            }
            output.append(segment)
        }
        return output.joined(separator: "/") + (fragment.map { "#" + $0 } ?? "")
    }
}

/// JSON Pointer (RFC 6901) helpers.
enum JSONPointer {
    /// Decodes a URI fragment pointer into its reference tokens, or `nil` if it is not a pointer.
    static func tokens(fromFragment fragment: String) -> [String]? {
        let decoded = fragment.removingPercentEncodingLossy()
        if decoded.isEmpty { return [] }
        guard decoded.hasPrefix("/") else { return nil }
        return decoded.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            $0.replacingOccurrences("~1", with: "/").replacingOccurrences("~0", with: "~")
        }
    }

    /// Escapes one reference token.
    static func escape(_ token: String) -> String {
        token.replacingOccurrences("~", with: "~0").replacingOccurrences("/", with: "~1")
    }
}

extension StringProtocol {
    func replacingOccurrences(_ target: String, with replacement: String) -> String {
        var result = ""
        var rest = Substring(self)
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }

    func removingPercentEncodingLossy() -> String {
        guard contains("%") else { return String(self) }
        var bytes: [UInt8] = []
        var iterator = Array(utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "%"), iterator.count >= 2,
                let value = UInt8(String(decoding: iterator.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                iterator = iterator.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

#if canImport(FoundationEssentials)
import Foundation
#else
import Foundation
#endif

/// A compiled `pattern`. ICU (through `NSRegularExpression`) stands in for ECMA-262; the
/// translation below covers the differences our schemas and the suite rely on.
struct ECMARegex: @unchecked Sendable {
    // NSRegularExpression is immutable and documented as safe to share between threads.
    private let regex: NSRegularExpression
    let source: String

    init(_ source: String) throws(SchemaError) {
        self.source = source
        do {
            regex = try NSRegularExpression(pattern: Self.translate(source), options: [])
        } catch {
            throw SchemaError("invalid regular expression \"\(source)\"")
        }
    }

    /// ECMA-262 `\d`, `\w`, `\s` classes are ASCII/ECMA-specific; ICU's are Unicode.
    static func translate(_ pattern: String) -> String {
        var out = ""
        var escaped = false
        for ch in pattern {
            if escaped {
                switch ch {
                case "d": out += "[0-9]"
                case "D": out += "[^0-9]"
                case "w": out += "[A-Za-z0-9_]"
                case "W": out += "[^A-Za-z0-9_]"
                default: out += "\\" + String(ch)
                }
                escaped = false
            } else if ch == "\\" {
                escaped = true
            } else {
                out.append(ch)
            }
        }
        if escaped { out += "\\" }
        return out
    }

    /// Whether `string` contains a match (patterns are not anchored, as in ECMA-262).
    func matches(_ string: String) -> Bool {
        let range = NSRange(string.startIndex..<string.endIndex, in: string)
        return regex.firstMatch(in: string, options: [], range: range) != nil
    }
}

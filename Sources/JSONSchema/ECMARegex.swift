#if canImport(FoundationEssentials)
import Foundation
#else
import Foundation
#endif

/// A compiled `pattern`: `ECMAPattern` for the common subset of ECMA-262; ICU (through
/// `NSRegularExpression`) for the rest, with the translation below for the classes that differ.
struct ECMARegex: @unchecked Sendable {
    // NSRegularExpression is immutable and documented as safe to share between threads.
    private let regex: NSRegularExpression?
    /// Our own engine, used whenever the pattern is within its subset (fast, no bridging).
    private let pattern: ECMAPattern?
    let source: String

    init(_ source: String) throws(SchemaError) {
        self.source = source
        if let own = ECMAPattern(source) {
            pattern = own
            regex = nil
            return
        }
        pattern = nil
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
        if let pattern { return pattern.matches(string) }
        let range = NSRange(string.startIndex..<string.endIndex, in: string)
        return regex!.firstMatch(in: string, options: [], range: range) != nil
    }
}

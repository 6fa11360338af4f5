/// The `isValid` fast path: a compiled schema flattened into plain-data tables.
///
/// `SchemaNode`s are convenient for the detailed evaluator, but walking them costs reference counting
/// per keyword (each keyword's operands are copied out of an enum with class and array payloads).
/// Here every node is a row of integers, every keyword an instruction of integers and a double, grouped
/// by the instance type it applies to, so one `switch` on the instance serves all of a node's string (or
/// number, object, array) keywords. `$ref`-only nodes are skipped at build time, and an object's
/// `properties` and `required` become one table walked once.
///
/// Only schemas that need no annotations and no dynamic scope are flattened (no `unevaluated*`, no
/// `$dynamicRef`); rarer keywords run through the detailed evaluator, one keyword at a time.
final class FlatProgram: @unchecked Sendable {
    // Written once in `init`, read-only afterwards; the buffers are owned here and freed in `deinit`.
    private let nodes: UnsafeMutableBufferPointer<FlatNode>
    private let instructions: UnsafeMutableBufferPointer<FlatInstruction>
    private let nodeLists: UnsafeMutableBufferPointer<Int32>
    private let members: UnsafeMutableBufferPointer<FlatMember>
    private let strings: [String]
    private let values: [JSONValue]
    /// A buffer, not an array: `regexes[i].matches` then runs on the stored value, where an array's subscript copied
    /// the regex out and back for every string checked (retaining and releasing its parts: ~1 % of ingest's samples).
    private let regexes: UnsafeMutableBufferPointer<ECMARegex>
    private let formats: [FormatAssertion]
    private let fallbacks: [FlatFallback]
    private let root: Int32
    /// The member names and string constants the schemas name (what a parser may hand out ready-made).
    let literalStrings: [String]

    /// Flattens the graph under `root`, or returns nil when it needs the detailed evaluator.
    init?(root: SchemaNode, tracksScope: Bool) {
        guard !tracksScope, let builder = FlatProgramBuilder(root: root) else { return nil }
        self.root = builder.root
        nodes = Self.copy(builder.nodes)
        instructions = Self.copy(builder.instructions)
        nodeLists = Self.copy(builder.nodeLists)
        members = Self.copy(builder.members)
        strings = builder.strings.values
        values = builder.values
        regexes = .allocate(capacity: builder.regexes.count)
        _ = regexes.initialize(from: builder.regexes)
        formats = builder.formats
        fallbacks = builder.fallbacks
        literalStrings = builder.strings.values + builder.values.compactMap { if case .string(let s) = $0 { s } else { nil } }
    }

    private static func copy<T>(_ array: [T]) -> UnsafeMutableBufferPointer<T> {
        let buffer = UnsafeMutableBufferPointer<T>.allocate(capacity: max(array.count, 1))
        _ = buffer.initialize(from: array)
        return buffer
    }

    deinit {
        nodes.deallocate()
        instructions.deallocate()
        nodeLists.deallocate()
        members.deallocate()
        regexes.deinitialize()
        regexes.deallocate()
    }

    func isValid(_ instance: JSONValue) -> Bool {
        var depth = 0
        return validate(root, instance, &depth)
    }

    private func validate(_ index: Int32, _ value: JSONValue, _ depth: inout Int) -> Bool {
        let node = nodes[Int(index)]
        if node.boolean >= 0 { return node.boolean == 1 }
        depth += 1
        defer { depth -= 1 }
        if depth > Evaluation.maxDepth { return false }
        if node.types != TypeMask.all, !TypeMask(rawValue: node.types).admits(value) { return false }
        switch value {
        case .string(let s):
            for i in node.string.range where !checkString(instructions[i], s) { return false }
        case .number(let n):
            for i in node.number.range where !checkNumber(instructions[i], n) { return false }
        case .object(let o):
            for i in node.object.range where !checkObject(instructions[i], o, &depth) { return false }
        case .array(let a):
            for i in node.array.range where !checkArray(instructions[i], a, &depth) { return false }
        case .null, .bool:
            break
        }
        for i in node.any.range where !checkAny(instructions[i], value, &depth) { return false }
        return true
    }

    private func checkString(_ instruction: FlatInstruction, _ s: String) -> Bool {
        switch instruction.op {
        case .minLength: StringLength.atLeast(s, Int(instruction.a))
        case .maxLength: StringLength.atMost(s, Int(instruction.a))
        case .pattern: regexes[Int(instruction.a)].matches(s)
        case .format: formats[Int(instruction.a)].accepts(s)
        default: preconditionFailure("not a string instruction: \(instruction.op)")
        }
    }

    private func checkNumber(_ instruction: FlatInstruction, _ n: JSONNumber) -> Bool {
        switch instruction.op {
        case .minimum: !(n.double < instruction.number)
        case .maximum: !(n.double > instruction.number)
        case .exclusiveMinimum: !(n.double <= instruction.number)
        case .exclusiveMaximum: !(n.double >= instruction.number)
        case .multipleOf: NumericChecks.isMultiple(n, of: instruction.number)
        default: preconditionFailure("not a number instruction: \(instruction.op)")
        }
    }

    private func checkObject(_ instruction: FlatInstruction, _ o: JSONObject, _ depth: inout Int) -> Bool {
        switch instruction.op {
        case .members:
            for i in instruction.a..<instruction.b {
                let member = members[Int(i)]
                if let value = o[strings[Int(member.name)]] {
                    if member.child >= 0, !validate(member.child, value, &depth) { return false }
                } else if member.required {
                    return false
                }
            }
            return true
        case .minProperties: return o.count >= Int(instruction.a)
        case .maxProperties: return o.count <= Int(instruction.a)
        default: preconditionFailure("not an object instruction: \(instruction.op)")
        }
    }

    private func checkArray(_ instruction: FlatInstruction, _ items: [JSONValue], _ depth: inout Int) -> Bool {
        switch instruction.op {
        case .minItems: return items.count >= Int(instruction.a)
        case .maxItems: return items.count <= Int(instruction.a)
        case .items:
            let from = Int(instruction.b)
            guard items.count > from else { return true }
            for i in from..<items.count where !validate(instruction.a, items[i], &depth) { return false }
            return true
        case .prefixItems:
            for (offset, i) in (instruction.a..<instruction.b).enumerated() where offset < items.count {
                if !validate(nodeLists[Int(i)], items[offset], &depth) { return false }
            }
            return true
        default: preconditionFailure("not an array instruction: \(instruction.op)")
        }
    }

    private func checkAny(_ instruction: FlatInstruction, _ value: JSONValue, _ depth: inout Int) -> Bool {
        switch instruction.op {
        case .constant:
            return JSONEquality.equal(values[Int(instruction.a)], value)
        case .enumeration:
            for i in instruction.a..<instruction.b where JSONEquality.equal(values[Int(i)], value) { return true }
            return false
        case .allOf:
            for i in instruction.a..<instruction.b where !validate(nodeLists[Int(i)], value, &depth) { return false }
            return true
        case .anyOf:
            for i in instruction.a..<instruction.b where validate(nodeLists[Int(i)], value, &depth) { return true }
            return false
        case .oneOf:
            var matches = 0
            for i in instruction.a..<instruction.b where validate(nodeLists[Int(i)], value, &depth) {
                matches += 1
                if matches > 1 { return false }
            }
            return matches == 1
        case .not:
            return !validate(instruction.a, value, &depth)
        case .conditional:
            let branch = validate(instruction.a, value, &depth) ? instruction.b : instruction.c
            return branch < 0 || validate(branch, value, &depth)
        case .ref:
            return validate(instruction.a, value, &depth)
        case .discriminated:
            // Only the branch whose constant the discriminating property carries applies; with the property
            // missing or not a string every `if` fails. A non-object passes every `if`, so every `then` applies.
            guard case .object(let o) = value else {
                for i in instruction.a..<instruction.b where !validate(members[Int(i)].child, value, &depth) { return false }
                return true
            }
            guard case .string(let tag)? = o[strings[Int(instruction.c)]] else { return true }
            // The tag is mostly the schema's own string (a parser hands those out, see `KnownStrings`): the branch
            // whose constant has its very representation applies and, the constants being distinct, no other.
            if instruction.distinct {
                for i in instruction.a..<instruction.b where strings[Int(members[Int(i)].name)].hasSameRepresentation(as: tag) {
                    return validate(members[Int(i)].child, value, &depth)
                }
            }
            for i in instruction.a..<instruction.b {
                let branch = members[Int(i)]
                if JSONValue.sameCodePoints(strings[Int(branch.name)], tag), !validate(branch.child, value, &depth) { return false }
            }
            return true
        case .fallback:
            let fallback = fallbacks[Int(instruction.a)]
            var evaluation = Evaluation(collecting: false, tracksScope: false)
            var scratch = Annotations()
            return evaluation.check(fallback.node.keywords[fallback.keyword], fallback.node, value, &scratch, false)
        default:
            preconditionFailure("not a generic instruction: \(instruction.op)")
        }
    }
}

/// What a flat instruction does.
enum FlatOp: UInt8 {
    // Strings: `a` is the limit, or the index of the regex or format.
    case minLength, maxLength, pattern, format
    // Numbers: the limit is `number`.
    case minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf
    // Objects. `members`: `properties` + `required`, members[a..<b].
    case members, minProperties, maxProperties
    // Arrays. `items`: node a from index b. `prefixItems`: nodeLists[a..<b].
    case minItems, maxItems, items, prefixItems
    // Any instance. Lists are nodeLists[a..<b] (values[a..<b] for enum); `conditional` is if a, then b, else c (-1: none).
    // `discriminated`: branches in members[a..<b] (name = the constant, child = the `then`), the property is strings[c].
    case constant, enumeration, allOf, anyOf, oneOf, not, conditional, ref, discriminated, fallback
}

/// One keyword, as plain data.
struct FlatInstruction {
    var op: FlatOp
    /// `discriminated`: the branches' constants are pairwise distinct (so at most one branch applies).
    var distinct = false
    var a: Int32 = 0
    var b: Int32 = 0
    var c: Int32 = 0
    var number: Double = 0
}

/// A range of instruction indexes.
struct FlatRange {
    var start: Int32 = 0
    var end: Int32 = 0
    var range: Range<Int> { Int(start)..<Int(end) }
}

/// One schema: its boolean value, or its allowed types and its instructions by the instance type they
/// apply to (those of other types are skipped without a look).
struct FlatNode {
    /// -1: not a boolean schema; 0: `false`; 1: `true`.
    var boolean: Int8 = -1
    var types: UInt8 = TypeMask.all
    var string = FlatRange()
    var number = FlatRange()
    var object = FlatRange()
    var array = FlatRange()
    var any = FlatRange()
}

/// An entry of a `properties`/`required` table (or a discriminator branch).
struct FlatMember {
    /// Index into the string table.
    var name: Int32
    /// The node for the member's value; -1 when only `required` names it.
    var child: Int32
    var required: Bool
}

/// A keyword the flat form does not cover, run by the detailed evaluator.
struct FlatFallback {
    let node: NodeRef
    let keyword: Int
}

extension TypeMask {
    static let all: UInt8 = 0x7F
}

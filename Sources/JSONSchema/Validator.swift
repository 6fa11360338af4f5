/// One failed assertion, in the shape of the specification's "basic" output unit.
public struct ValidationError: Sendable, Equatable, CustomStringConvertible {
    /// JSON Pointer to the failing part of the instance (`""` is the whole document).
    public let instanceLocation: String
    /// The keyword's path through the schema as evaluated (through `$ref`s).
    public let keywordLocation: String
    /// The keyword's absolute location: the schema's URI and JSON Pointer.
    public let absoluteKeywordLocation: String
    /// What failed, for people.
    public let message: String

    public var description: String {
        "\(instanceLocation.isEmpty ? "/" : instanceLocation): \(message) (\(keywordLocation))"
    }
}

/// The outcome of validating one instance.
public struct ValidationResult: Sendable {
    /// Whether the instance is valid.
    public let isValid: Bool
    /// The failed assertions (empty when valid), the most specific first.
    public let errors: [ValidationError]
}

/// A compiled JSON Schema (draft 2020-12) validator: compile once, validate many times,
/// from many threads at once.
public struct JSONSchemaValidator: Sendable {
    private let root: SchemaNode
    /// Every compiled node, kept alive here so the evaluator's `NodeRef`s stay valid.
    private let nodes: [SchemaNode]
    private let tracksScope: Bool
    /// The flat form for `isValid`, when the schema allows one (see `FlatProgram`).
    private let program: FlatProgram?
    /// The member names and string constants of the flat form's schemas, for a parser to hand out ready-made
    /// (`JSONParser(knownStrings:)`); none without a flat form.
    public let knownStrings: KnownStrings
    /// The URI of the schema this validator checks against.
    public let schemaURI: String

    /// Compiles the schema at `uri` (which may carry a fragment) from `registry`.
    public init(registry: SchemaRegistry, uri: String, options: ValidatorOptions = .init()) throws(SchemaError) {
        var compiler = SchemaCompiler(registry: registry, options: options)
        self.root = try compiler.compile(uri: uri)
        self.nodes = Array(compiler.nodes.values)
        self.tracksScope = compiler.usesDynamicScope
        self.program = options.flatProgram ? FlatProgram(root: root, tracksScope: tracksScope) : nil
        self.knownStrings = program.map { KnownStrings($0.literalStrings) } ?? .none
        self.schemaURI = uri
    }

    /// Whether `isValid` runs on the flat form (false for schemas that need annotations or the dynamic scope).
    var usesFlatProgram: Bool { program != nil }

    /// Whether `instance` is valid; the fast path, allocating nothing for valid documents.
    public func isValid(_ instance: JSONValue) -> Bool {
        if let program { return program.isValid(instance) }
        var evaluation = Evaluation(collecting: false, tracksScope: tracksScope)
        return evaluation.validate(NodeRef(root), instance)
    }

    /// Validates `instance`, collecting up to `maxErrors` failures when it is invalid.
    public func validate(_ instance: JSONValue, maxErrors: Int = 16) -> ValidationResult {
        if isValid(instance) { return ValidationResult(isValid: true, errors: []) }
        var evaluation = Evaluation(collecting: true, tracksScope: tracksScope, maxErrors: maxErrors)
        _ = evaluation.validate(NodeRef(root), instance)
        return ValidationResult(isValid: false, errors: evaluation.errors)
    }
}

/// One validation run. When `collecting`, it tracks paths and records errors; otherwise it
/// returns at the first failure. Annotations (what was evaluated) are gathered only for nodes
/// that need them (`unevaluated*`), and the dynamic scope only when `$dynamicRef` is used.
struct Evaluation {
    let collecting: Bool
    let tracksScope: Bool
    var maxErrors = 16
    var errors: [ValidationError] = []
    var instancePath: [String] = []
    var keywordPath: [String] = []
    /// Errors under `anyOf`/`oneOf`/`not`/`if` branches are not the instance's errors.
    var muted = 0
    /// Resource bases entered, outermost first (the dynamic scope).
    var scope: [String] = []
    var depth = 0
    /// Deeper than this, a schema that recurses without consuming the instance is cut off.
    static let maxDepth = 512

    init(collecting: Bool, tracksScope: Bool, maxErrors: Int = 16) {
        self.collecting = collecting
        self.tracksScope = tracksScope
        self.maxErrors = maxErrors
    }

    mutating func report(_ node: NodeRef, _ keyword: String, _ message: @autoclosure () -> String) {
        guard collecting, muted == 0, errors.count < maxErrors else { return }
        errors.append(
            ValidationError(
                instanceLocation: instancePath.map { "/" + JSONPointer.escape($0) }.joined(),
                keywordLocation: (keywordPath + (keyword.isEmpty ? [] : [keyword])).map { "/" + JSONPointer.escape($0) }.joined(),
                absoluteKeywordLocation: node.location + (keyword.isEmpty ? "" : "/" + JSONPointer.escape(keyword)),
                message: message()
            )
        )
    }

    /// Validates a child instance (`member`) or, without `member`, the same instance in place,
    /// merging annotations into `annotations` when `collect` is set.
    mutating func descend(
        _ child: NodeRef, _ value: JSONValue, keyword: PathStep, member: Member = .none, into annotations: inout Annotations, collect: Bool
    ) -> Bool {
        guard collecting else { return validate(child, value, &annotations, collect: collect) }
        let added = keyword.append(to: &keywordPath)
        let hasMember = member.append(to: &instancePath)
        let ok = validate(child, value, &annotations, collect: collect)
        keywordPath.removeLast(added)
        if hasMember { instancePath.removeLast() }
        return ok
    }

    /// Validates a child instance; annotations of another instance never matter here.
    mutating func descendMember(_ child: NodeRef, _ value: JSONValue, keyword: PathStep, member: Member) -> Bool {
        var scratch = Annotations()
        return descend(child, value, keyword: keyword, member: member, into: &scratch, collect: false)
    }

    /// Validates silently (a branch whose errors are not the instance's).
    mutating func probe(_ child: NodeRef, _ value: JSONValue, keyword: PathStep, into annotations: inout Annotations, collect: Bool) -> Bool {
        muted += 1
        defer { muted -= 1 }
        return descend(child, value, keyword: keyword, into: &annotations, collect: collect)
    }

    mutating func validate(_ node: NodeRef, _ value: JSONValue) -> Bool {
        var scratch = Annotations()
        return validate(node, value, &scratch, collect: false)
    }

    mutating func validate(_ node: NodeRef, _ value: JSONValue, _ out: inout Annotations, collect: Bool) -> Bool {
        if let boolean = node.boolean {
            if !boolean { report(node, "", "no value is allowed here") }
            return boolean
        }
        depth += 1
        defer { depth -= 1 }
        if depth > Self.maxDepth {
            report(node, "", "schema recursion deeper than \(Self.maxDepth) levels")
            return false
        }
        let entered = tracksScope && scope.last != node.resourceBase
        if entered { scope.append(node.resourceBase) }
        defer { if entered { scope.removeLast() } }

        let collectHere = collect || node.hasUnevaluated
        var local = Annotations()
        var valid = true
        let keywords = node.keywords
        for index in keywords.indices {
            if !check(keywords[index], node, value, &local, collectHere) {
                valid = false
                if !collecting { return false }
            }
        }
        if valid && collect { out.merge(local) }
        return valid
    }

    // swiftlint:disable:next cyclomatic_complexity function_body_length
    mutating func check(_ keyword: borrowing CompiledKeyword, _ node: NodeRef, _ value: JSONValue, _ annotations: inout Annotations, _ collect: Bool) -> Bool {
        let name = keyword.name
        switch keyword.kind {
        case .type(let mask):
            if mask.admits(value) { return true }
            report(node, name, "expected \(mask.names.joined(separator: " or ")), got \(value.typeName)")
            return false
        case .enumeration(let options):
            if options.contains(where: { JSONEquality.equal($0, value) }) { return true }
            report(node, name, "\(value.serializedPreview) is not one of \(options.map(\.serializedPreview).joined(separator: ", "))")
            return false
        case .constant(let expected):
            if JSONEquality.equal(expected, value) { return true }
            report(node, name, "expected \(expected.serializedPreview), got \(value.serializedPreview)")
            return false
        case .multipleOf(let divisor):
            guard case .number(let n) = value else { return true }
            if NumericChecks.isMultiple(n, of: divisor) { return true }
            report(node, name, "\(n) is not a multiple of \(divisor)")
            return false
        case .minimum(let limit):
            guard case .number(let n) = value, n.double < limit else { return true }
            report(node, name, "\(n) is less than the minimum \(limit)")
            return false
        case .maximum(let limit):
            guard case .number(let n) = value, n.double > limit else { return true }
            report(node, name, "\(n) is greater than the maximum \(limit)")
            return false
        case .exclusiveMinimum(let limit):
            guard case .number(let n) = value, n.double <= limit else { return true }
            report(node, name, "\(n) must be greater than \(limit)")
            return false
        case .exclusiveMaximum(let limit):
            guard case .number(let n) = value, n.double >= limit else { return true }
            report(node, name, "\(n) must be less than \(limit)")
            return false
        case .minLength(let limit):
            guard case .string(let s) = value, !StringLength.atLeast(s, limit) else { return true }
            report(node, name, "string is shorter than \(limit) characters")
            return false
        case .maxLength(let limit):
            guard case .string(let s) = value, !StringLength.atMost(s, limit) else { return true }
            report(node, name, "string is longer than \(limit) characters")
            return false
        case .pattern(let regex):
            guard case .string(let s) = value, !regex.matches(s) else { return true }
            report(node, name, "\(value.serializedPreview) does not match the pattern \(regex.source)")
            return false
        case .minItems(let limit):
            guard case .array(let items) = value, items.count < limit else { return true }
            report(node, name, "array has fewer than \(limit) items")
            return false
        case .maxItems(let limit):
            guard case .array(let items) = value, items.count > limit else { return true }
            report(node, name, "array has more than \(limit) items")
            return false
        case .uniqueItems:
            guard case .array(let items) = value else { return true }
            for i in items.indices {
                for j in items.indices where j > i && JSONEquality.equal(items[i], items[j]) {
                    report(node, name, "items \(i) and \(j) are equal")
                    return false
                }
            }
            return true
        case .contains(let child, let min, let max):
            guard case .array(let items) = value else { return true }
            var matched = 0
            for (i, item) in items.enumerated() {
                var scratch = Annotations()
                muted += 1
                let ok = descend(child, item, keyword: PathStep(name), member: .index(i), into: &scratch, collect: false)
                muted -= 1
                if ok {
                    matched += 1
                    if collect { annotations.insertItem(i) }
                }
            }
            if matched < min {
                report(node, name, "array contains \(matched) matching items, fewer than \(min)")
                return false
            }
            if let max, matched > max {
                report(node, "maxContains", "array contains \(matched) matching items, more than \(max)")
                return false
            }
            return true
        case .minProperties(let limit):
            guard case .object(let members) = value, members.count < limit else { return true }
            report(node, name, "object has fewer than \(limit) properties")
            return false
        case .maxProperties(let limit):
            guard case .object(let members) = value, members.count > limit else { return true }
            report(node, name, "object has more than \(limit) properties")
            return false
        case .required(let names):
            guard case .object(let members) = value else { return true }
            var ok = true
            for required in names where members[required] == nil {
                report(node, name, "required property \"\(required)\" is missing")
                ok = false
                if !collecting { return false }
            }
            return ok
        case .dependentRequired(let dependencies):
            guard case .object(let members) = value else { return true }
            var ok = true
            for (trigger, needed) in dependencies where members[trigger] != nil {
                for other in needed where members[other] == nil {
                    report(node, name, "property \"\(other)\" is required when \"\(trigger)\" is present")
                    ok = false
                }
            }
            return ok
        case .properties(let children):
            guard case .object(let members) = value else { return true }
            var ok = true
            for (property, child) in children {
                guard let member = members[property] else { continue }
                if collect { annotations.insertProperty(property) }
                if !descendMember(child, member, keyword: PathStep(name, property), member: .key(property)) {
                    ok = false
                    if !collecting { return false }
                }
            }
            return ok
        case .patternProperties(let children):
            guard case .object(let members) = value else { return true }
            var ok = true
            for (regex, child) in children {
                for (property, member) in members where regex.matches(property) {
                    if collect { annotations.insertProperty(property) }
                    if !descendMember(child, member, keyword: PathStep(name, regex.source), member: .key(property)) {
                        ok = false
                        if !collecting { return false }
                    }
                }
            }
            return ok
        case .additionalProperties(let child, let known, let patterns):
            guard case .object(let members) = value else { return true }
            var ok = true
            for (property, member) in members where !known.contains(property) && !patterns.contains(where: { $0.matches(property) }) {
                if collect { annotations.insertProperty(property) }
                if child.boolean == false {
                    report(node, name, "property \"\(property)\" is not allowed")
                    ok = false
                } else if !descendMember(child, member, keyword: PathStep(name), member: .key(property)) {
                    ok = false
                }
                if !ok && !collecting { return false }
            }
            return ok
        case .propertyNames(let child):
            guard case .object(let members) = value else { return true }
            var ok = true
            for property in members.keys where !descendMember(child, .string(property), keyword: PathStep(name), member: .key(property)) {
                ok = false
                if !collecting { return false }
            }
            return ok
        case .prefixItems(let children):
            guard case .array(let items) = value else { return true }
            var ok = true
            for (i, child) in children.enumerated() where i < items.count {
                if !descendMember(child, items[i], keyword: PathStep(name, index: i), member: .index(i)) {
                    ok = false
                    if !collecting { return false }
                }
            }
            if collect { annotations.itemsPrefix = max(annotations.itemsPrefix, min(children.count, items.count)) }
            return ok
        case .items(let child, let from):
            guard case .array(let items) = value, items.count > from else { return true }
            if collect { annotations.allItems = true }
            var ok = true
            for i in from..<items.count {
                if child.boolean == false {
                    report(node, name, "array has more than \(from) items")
                    return false
                }
                if !descendMember(child, items[i], keyword: PathStep(name), member: .index(i)) {
                    ok = false
                    if !collecting { return false }
                }
            }
            return ok
        case .allOf(let children):
            var ok = true
            for (i, child) in children.enumerated() where !descend(child, value, keyword: PathStep(name, index: i), into: &annotations, collect: collect) {
                ok = false
                if !collecting { return false }
            }
            return ok
        case .discriminatedAllOf(let discriminator, let alternatives):
            if collecting || collect {
                return check(CompiledKeyword(name: name, kind: .allOf(alternatives)), node, value, &annotations, collect)
            }
            guard case .object(let members) = value else {
                // Not an object: every `if` holds (properties/required ignore it), so every `then` applies.
                return discriminator.thens.allSatisfy { validate($0, value) }
            }
            guard case .string(let tag)? = members[discriminator.property], let indexes = discriminator.branches[tag] else { return true }
            for i in indexes where JSONValue.sameCodePoints(discriminator.constants[i], tag) {
                if !validate(discriminator.thens[i], value) { return false }
            }
            return true
        case .anyOf(let children):
            var any = false
            for (i, child) in children.enumerated() {
                if probe(child, value, keyword: PathStep(name, index: i), into: &annotations, collect: collect) {
                    any = true
                    if !collect { return true }  // every valid branch annotates; otherwise one suffices
                }
            }
            if any { return true }
            report(node, name, "value matches none of the \(children.count) alternatives")
            return false
        case .oneOf(let children):
            var matches = 0
            var matched = Annotations()
            for (i, child) in children.enumerated() {
                var branch = Annotations()
                if probe(child, value, keyword: PathStep(name, index: i), into: &branch, collect: collect) {
                    matches += 1
                    matched = branch
                    if matches > 1 { break }
                }
            }
            if matches == 1 {
                if collect { annotations.merge(matched) }
                return true
            }
            report(node, name, matches == 0 ? "value matches none of the alternatives" : "value matches more than one alternative")
            return false
        case .not(let child):
            var scratch = Annotations()
            if !probe(child, value, keyword: PathStep(name), into: &scratch, collect: false) { return true }
            report(node, name, "value must not match the schema")
            return false
        case .conditional(let condition, let thenNode, let elseNode):
            if probe(condition, value, keyword: PathStep(name), into: &annotations, collect: collect) {
                guard let thenNode else { return true }
                return descend(thenNode, value, keyword: PathStep("then"), into: &annotations, collect: collect)
            }
            guard let elseNode else { return true }
            return descend(elseNode, value, keyword: PathStep("else"), into: &annotations, collect: collect)
        case .dependentSchemas(let dependencies):
            guard case .object(let members) = value else { return true }
            var ok = true
            for (trigger, child) in dependencies where members[trigger] != nil {
                if !descend(child, value, keyword: PathStep(name, trigger), into: &annotations, collect: collect) {
                    ok = false
                    if !collecting { return false }
                }
            }
            return ok
        case .ref(let target):
            return descend(target, value, keyword: PathStep(name), into: &annotations, collect: collect)
        case .dynamicRef(let reference):
            var target = reference.staticTarget
            if reference.anchor != nil, let outermost = scope.first(where: { reference.candidates[$0] != nil }) {
                target = reference.candidates[outermost]!
            }
            return descend(target, value, keyword: PathStep(name), into: &annotations, collect: collect)
        case .unevaluatedProperties(let child):
            guard case .object(let members) = value, !annotations.allProperties else { return true }
            var ok = true
            for (property, member) in members where !annotations.hasProperty(property) {
                if child.boolean == false {
                    report(node, name, "property \"\(property)\" is not allowed (not evaluated by any other keyword)")
                    ok = false
                } else if !descendMember(child, member, keyword: PathStep(name), member: .key(property)) {
                    ok = false
                }
                if !ok && !collecting { return false }
            }
            annotations.allProperties = true
            return ok
        case .unevaluatedItems(let child):
            guard case .array(let items) = value, !annotations.allItems else { return true }
            var ok = true
            for i in annotations.itemsPrefix..<max(annotations.itemsPrefix, items.count) where !annotations.hasItem(i) {
                if !descendMember(child, items[i], keyword: PathStep(name), member: .index(i)) {
                    ok = false
                    if !collecting { return false }
                }
            }
            annotations.allItems = true
            return ok
        case .format(let format):
            guard case .string(let s) = value, !format.accepts(s) else { return true }
            report(node, name, "\(value.serializedPreview) is not a valid \(format.name)")
            return false
        }
    }
}

/// One or two keyword-path segments, without allocating (paths are built only when reporting).
struct PathStep {
    let first: String
    let second: String?
    let index: Int

    init(_ first: String, _ second: String? = nil) {
        self.first = first
        self.second = second
        self.index = -1
    }

    init(_ first: String, index: Int) {
        self.first = first
        self.second = nil
        self.index = index
    }

    /// Appends the segments; returns how many.
    func append(to path: inout [String]) -> Int {
        path.append(first)
        if let second {
            path.append(second)
            return 2
        }
        if index >= 0 {
            path.append(String(index))
            return 2
        }
        return 1
    }
}

/// The instance member a child schema applies to, formatted only when reporting.
enum Member {
    case none
    case key(String)
    case index(Int)

    func append(to path: inout [String]) -> Bool {
        switch self {
        case .none: return false
        case .key(let k): path.append(k)
        case .index(let i): path.append(String(i))
        }
        return true
    }
}

/// JSON Schema equality: numbers by value (`1 == 1.0`), objects regardless of key order.
enum JSONEquality {
    static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        a == b  // JSONNumber's == already compares by value; dictionaries ignore order.
    }
}

/// `minLength`/`maxLength`: lengths in code points, counted only when the byte count cannot decide.
enum StringLength {
    /// Code points, counted from the UTF-8 bytes (every byte but continuation bytes starts one).
    static func scalarCount(_ s: String) -> Int {
        // UTF-16 and UTF-8 lengths agree only for ASCII, where Swift knows both without scanning.
        if s.utf16.count == s.utf8.count { return s.utf8.count }
        return s.utf8.reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
    }

    /// Whether `s` has at least `limit` code points (scalars ≤ UTF-8 bytes ≤ 4 × scalars).
    static func atLeast(_ s: String, _ limit: Int) -> Bool {
        let bytes = s.utf8.count
        return bytes >= 4 * limit || (bytes >= limit && scalarCount(s) >= limit)
    }

    /// Whether `s` has at most `limit` code points.
    static func atMost(_ s: String, _ limit: Int) -> Bool {
        s.utf8.count <= limit || scalarCount(s) <= limit
    }
}

enum NumericChecks {
    static func isMultiple(_ n: JSONNumber, of divisor: Double) -> Bool {
        if let i = n.integer, divisor.rounded() == divisor, let d = Int64(exactly: divisor) { return i % d == 0 }
        let quotient = n.double / divisor
        if !quotient.isFinite { return false }
        return abs(quotient - quotient.rounded()) < 1e-9
    }
}

extension JSONValue {
    /// A short rendering for messages; long values are cut.
    var serializedPreview: String {
        let text = serialized()
        return text.count > 64 ? String(text.prefix(61)) + "..." : text
    }
}

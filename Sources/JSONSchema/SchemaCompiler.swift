/// What to do with keywords this validator does not know.
public enum UnknownKeywordPolicy: Sendable {
    /// Refuse to compile: a schema author's typo must not silently weaken validation.
    case reject
    /// Ignore them, as the specification says for unknown keywords.
    case ignore
}

/// Options for compiling a validator.
public struct ValidatorOptions: Sendable {
    /// Whether `format` asserts (true) or only annotates (false, the 2020-12 default).
    public var formatAssertion: Bool
    /// What to do with unknown keywords. Default `.reject`.
    public var unknownKeywords: UnknownKeywordPolicy
    /// Whether `isValid` may use the flat fast path (tests switch it off to check one against the other).
    var flatProgram = true

    /// Creates options; the defaults are annotation-only `format` and rejecting unknown keywords.
    public init(formatAssertion: Bool = false, unknownKeywords: UnknownKeywordPolicy = .reject) {
        self.formatAssertion = formatAssertion
        self.unknownKeywords = unknownKeywords
    }
}

/// Turns registry documents into `SchemaNode` graphs, once.
struct SchemaCompiler {
    let registry: SchemaRegistry
    let options: ValidatorOptions
    private(set) var nodes: [String: SchemaNode] = [:]
    /// Whether the validation vocabulary is on, per resource base (from its `$schema`'s `$vocabulary`).
    private var validationEnabled: [String: Bool] = [:]
    /// Whether any `$dynamicRef` was compiled (the evaluator then tracks the dynamic scope).
    private(set) var usesDynamicScope = false

    /// Keywords that carry no assertion here.
    static let annotationKeywords: Set<String> = [
        "$schema", "$id", "$comment", "$defs", "definitions", "$anchor", "$vocabulary",
        "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
        "contentMediaType", "contentEncoding", "contentSchema",
    ]

    /// Keywords of earlier drafts that 2020-12 replaced; a schema using them is refused under `.reject`.
    static let unsupportedKeywords: Set<String> = ["$recursiveRef", "$recursiveAnchor"]

    /// The validation vocabulary's keywords, switched off by a meta-schema whose `$vocabulary` omits it.
    static let validationVocabulary: Set<String> = [
        "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength",
        "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains", "maxProperties", "minProperties", "required",
        "dependentRequired",
    ]
    static let validationVocabularyURI = "https://json-schema.org/draft/2020-12/vocab/validation"

    init(registry: SchemaRegistry, options: ValidatorOptions) {
        self.registry = registry
        self.options = options
    }

    mutating func compile(uri: String) throws(SchemaError) -> SchemaNode {
        guard let (schema, base, location) = registry.lookup(uri) else {
            throw SchemaError("cannot resolve schema \(uri)")
        }
        return try compile(schema, base: base, location: location, baseIncludesOwnId: true)
    }

    /// `baseIncludesOwnId`: the base came from a registry look-up, which already applied the
    /// schema's own `$id` (applying a relative `$id` twice would nest it).
    private mutating func compile(_ schema: JSONValue, base: String, location: String, baseIncludesOwnId: Bool = false) throws(SchemaError) -> SchemaNode {
        if let existing = nodes[location] { return existing }
        var base = base
        if !baseIncludesOwnId, let id = schema["$id"]?.stringValue {
            base = URIReference.splitFragment(URIReference.resolve(id, against: base)).base
        }
        let node = SchemaNode(location: location, resourceBase: base)
        nodes[location] = node
        switch schema {
        case .bool(let b):
            node.boolean = b
            return node
        case .object(let members):
            if validationEnabled[base] == nil {
                validationEnabled[base] = vocabularyEnablesValidation(members["$schema"]?.stringValue)
            }
            node.keywords = ContiguousArray(try compileKeywords(members, base: base, location: location))
            node.hasUnevaluated = node.keywords.contains {
                if case .unevaluatedProperties = $0.kind { return true }
                if case .unevaluatedItems = $0.kind { return true }
                return false
            }
            return node
        default:
            throw SchemaError("schema at \(location) must be an object or a boolean, not \(schema.typeName)")
        }
    }

    private mutating func sub(_ schema: JSONValue, _ base: String, _ location: String, _ path: String...) throws(SchemaError) -> NodeRef {
        let suffix = path.map(JSONPointer.escape).joined(separator: "/")
        return NodeRef(try compile(schema, base: base, location: location + "/" + suffix))
    }

    /// A custom meta-schema can leave out the validation vocabulary; its keywords are then ignored.
    private func vocabularyEnablesValidation(_ metaSchema: String?) -> Bool {
        guard let metaSchema, let (document, _, _) = registry.lookup(URIReference.splitFragment(metaSchema).base),
            let vocabulary = document["$vocabulary"]?.objectValue
        else { return true }
        return vocabulary[Self.validationVocabularyURI] != nil
    }

    private mutating func compileKeywords(_ members: JSONObject, base: String, location: String) throws(SchemaError) -> [CompiledKeyword] {
        var keywords: [CompiledKeyword] = []
        func fail(_ keyword: String, _ message: String) -> SchemaError {
            SchemaError("schema at \(location): \"\(keyword)\" \(message)")
        }
        func nonNegativeInt(_ keyword: String) throws(SchemaError) -> Int {
            guard let v = members[keyword]?.int64Value, v >= 0 else { throw fail(keyword, "must be a non-negative integer") }
            return Int(v)
        }
        func number(_ keyword: String) throws(SchemaError) -> Double {
            guard let v = members[keyword]?.doubleValue else { throw fail(keyword, "must be a number") }
            return v
        }
        func schemaArray(_ keyword: String) throws(SchemaError) -> [JSONValue] {
            guard let items = members[keyword]?.arrayValue, !items.isEmpty else { throw fail(keyword, "must be a non-empty array of schemas") }
            return items
        }
        func schemaMap(_ keyword: String) throws(SchemaError) -> [(String, JSONValue)] {
            guard let map = members[keyword]?.objectValue else { throw fail(keyword, "must be an object of schemas") }
            return map.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        }

        // Keywords in a fixed order, cheap checks first.
        let validation = validationEnabled[base] ?? true
        for keyword in members.keys.sorted(by: Self.evaluationOrder) {
            let value = members[keyword]!
            let kind: KeywordKind?
            if !validation && Self.validationVocabulary.contains(keyword) { continue }
            switch keyword {
            case "type":
                var mask: TypeMask = []
                let names = value.arrayValue ?? [value]
                for name in names {
                    guard let n = name.stringValue, let t = TypeMask(name: n) else { throw fail(keyword, "names an unknown type \(name.serialized())") }
                    mask.insert(t)
                }
                kind = .type(mask)
            case "enum":
                guard let items = value.arrayValue else { throw fail(keyword, "must be an array") }
                kind = .enumeration(items)
            case "const": kind = .constant(value)
            case "multipleOf":
                let n = try number(keyword)
                guard n > 0 else { throw fail(keyword, "must be greater than 0") }
                kind = .multipleOf(n)
            case "minimum": kind = .minimum(try number(keyword))
            case "maximum": kind = .maximum(try number(keyword))
            case "exclusiveMinimum": kind = .exclusiveMinimum(try number(keyword))
            case "exclusiveMaximum": kind = .exclusiveMaximum(try number(keyword))
            case "minLength": kind = .minLength(try nonNegativeInt(keyword))
            case "maxLength": kind = .maxLength(try nonNegativeInt(keyword))
            case "pattern":
                guard let source = value.stringValue else { throw fail(keyword, "must be a string") }
                kind = .pattern(try ECMARegex(source))
            case "minItems": kind = .minItems(try nonNegativeInt(keyword))
            case "maxItems": kind = .maxItems(try nonNegativeInt(keyword))
            case "uniqueItems":
                guard let flag = value.boolValue else { throw fail(keyword, "must be a boolean") }
                kind = flag ? .uniqueItems : nil
            case "contains":
                let min = members["minContains"] == nil ? 1 : try nonNegativeInt("minContains")
                let max = members["maxContains"] == nil ? nil : try nonNegativeInt("maxContains")
                kind = .contains(try sub(value, base, location, keyword), min: min, max: max)
            case "minContains", "maxContains": kind = nil  // read by "contains"
            case "minProperties": kind = .minProperties(try nonNegativeInt(keyword))
            case "maxProperties": kind = .maxProperties(try nonNegativeInt(keyword))
            case "required":
                guard let names = value.arrayValue?.compactMap(\.stringValue), names.count == value.arrayValue?.count else {
                    throw fail(keyword, "must be an array of strings")
                }
                kind = .required(names)
            case "dependentRequired":
                guard let map = value.objectValue else { throw fail(keyword, "must be an object") }
                kind = .dependentRequired(map.sorted { $0.key < $1.key }.map { ($0.key, $0.value.arrayValue?.compactMap(\.stringValue) ?? []) })
            case "properties":
                var compiled: [(String, NodeRef)] = []
                for (name, schema) in try schemaMap(keyword) { compiled.append((name, try sub(schema, base, location, keyword, name))) }
                kind = .properties(compiled)
            case "patternProperties":
                var compiled: [(ECMARegex, NodeRef)] = []
                for (source, schema) in try schemaMap(keyword) {
                    compiled.append((try ECMARegex(source), try sub(schema, base, location, keyword, source)))
                }
                kind = .patternProperties(compiled)
            case "additionalProperties":
                let known = Set(members["properties"]?.objectValue?.keys.map { $0 } ?? [])
                var patterns: [ECMARegex] = []
                for source in (members["patternProperties"]?.objectValue?.keys.sorted() ?? []) { patterns.append(try ECMARegex(source)) }
                kind = .additionalProperties(try sub(value, base, location, keyword), known: known, patterns: patterns)
            case "propertyNames": kind = .propertyNames(try sub(value, base, location, keyword))
            case "prefixItems":
                var compiled: [NodeRef] = []
                for (i, schema) in try schemaArray(keyword).enumerated() { compiled.append(try sub(schema, base, location, keyword, String(i))) }
                kind = .prefixItems(compiled)
            case "items":
                let from = members["prefixItems"]?.arrayValue?.count ?? 0
                kind = .items(try sub(value, base, location, keyword), from: from)
            case "allOf", "anyOf", "oneOf":
                var compiled: [NodeRef] = []
                let items = try schemaArray(keyword)
                for (i, schema) in items.enumerated() { compiled.append(try sub(schema, base, location, keyword, String(i))) }
                if keyword == "allOf", let discriminator = try discriminator(items, base: base, location: location) {
                    kind = .discriminatedAllOf(discriminator, alternatives: compiled)
                } else {
                    kind = keyword == "allOf" ? .allOf(compiled) : keyword == "anyOf" ? .anyOf(compiled) : .oneOf(compiled)
                }
            case "not": kind = .not(try sub(value, base, location, keyword))
            case "if":
                let thenNode = try members["then"].map { (s) throws(SchemaError) -> NodeRef in try sub(s, base, location, "then") }
                let elseNode = try members["else"].map { (s) throws(SchemaError) -> NodeRef in try sub(s, base, location, "else") }
                kind = .conditional(if: try sub(value, base, location, keyword), then: thenNode, else: elseNode)
            case "then", "else": kind = nil  // read by "if"; alone they do nothing
            case "dependentSchemas":
                var compiled: [(String, NodeRef)] = []
                for (name, schema) in try schemaMap(keyword) { compiled.append((name, try sub(schema, base, location, keyword, name))) }
                kind = .dependentSchemas(compiled)
            case "$ref":
                guard let reference = value.stringValue else { throw fail(keyword, "must be a string") }
                let target = URIReference.resolve(reference, against: base)
                do {
                    kind = .ref(NodeRef(try compile(uri: target)))
                } catch {
                    throw fail(keyword, "cannot be resolved: \(target) (\(error.message))")
                }
            case "$dynamicRef":
                guard let reference = value.stringValue else { throw fail(keyword, "must be a string") }
                let target = URIReference.resolve(reference, against: base)
                let staticTarget: NodeRef
                do {
                    staticTarget = NodeRef(try compile(uri: target))
                } catch {
                    throw fail(keyword, "cannot be resolved: \(target) (\(error.message))")
                }
                // Dynamic only when the fragment is a plain name and the static target declares it.
                var anchor: String?
                if let fragment = URIReference.splitFragment(target).fragment, !fragment.isEmpty, !fragment.hasPrefix("/"),
                    registry.lookup(target)?.schema["$dynamicAnchor"]?.stringValue == fragment
                {
                    anchor = fragment
                }
                let dynamic = DynamicReference(staticTarget: staticTarget, anchor: anchor)
                if let anchor {
                    usesDynamicScope = true
                    for (resource, entry) in registry.dynamicAnchors[anchor] ?? [:] {
                        dynamic.candidates[resource] = NodeRef(try compile(entry.schema, base: resource, location: entry.location, baseIncludesOwnId: true))
                    }
                }
                kind = .dynamicRef(dynamic)
            case "$dynamicAnchor": kind = nil
            case "unevaluatedProperties": kind = .unevaluatedProperties(try sub(value, base, location, keyword))
            case "unevaluatedItems": kind = .unevaluatedItems(try sub(value, base, location, keyword))
            case "format":
                guard let name = value.stringValue else { throw fail(keyword, "must be a string") }
                kind = options.formatAssertion ? FormatAssertion(name: name).map { .format($0) } : nil
            default:
                if Self.annotationKeywords.contains(keyword) {
                    kind = nil
                } else if Self.unsupportedKeywords.contains(keyword) {
                    throw fail(keyword, "is not supported by this validator")
                } else if options.unknownKeywords == .reject {
                    throw fail(keyword, "is not a JSON Schema 2020-12 keyword this validator knows")
                } else {
                    kind = nil
                }
            }
            if let kind { keywords.append(CompiledKeyword(name: keyword, kind: kind)) }
        }
        return keywords
    }

    /// Recognises `allOf: [{if: {properties: {P: {const: "c"}}, required: [P]}, then: S}, …]` with one P.
    private mutating func discriminator(_ items: [JSONValue], base: String, location: String) throws(SchemaError) -> Discriminator? {
        guard items.count >= 2 else { return nil }
        var property: String?
        var branches: [String: [Int]] = [:]
        var constants: [String] = []
        var thens: [NodeRef] = []
        for (i, item) in items.enumerated() {
            guard let entry = item.objectValue, entry.count == 2, let condition = entry["if"]?.objectValue, let then = entry["then"],
                condition.count == 2, let required = condition["required"]?.arrayValue, required.count == 1,
                let name = required[0].stringValue, let properties = condition["properties"]?.objectValue, properties.count == 1,
                let constSchema = properties[name]?.objectValue, constSchema.count == 1, let constant = constSchema["const"]?.stringValue,
                property == nil || property == name
            else { return nil }
            property = name
            branches[constant, default: []].append(i)
            constants.append(constant)
            thens.append(NodeRef(try compile(then, base: base, location: location + "/allOf/\(i)/then")))
        }
        return Discriminator(property: property!, branches: branches, constants: constants, thens: thens)
    }

    /// Orders keywords so that cheap type checks run before applicators.
    static func evaluationOrder(_ a: String, _ b: String) -> Bool {
        func rank(_ k: String) -> Int {
            switch k {
            case "type": 0
            case "const", "enum", "required": 1
            case "$ref", "$dynamicRef", "allOf", "anyOf", "oneOf", "not", "if", "dependentSchemas": 3
            case "unevaluatedItems", "unevaluatedProperties": 9  // after everything that annotates
            default: 2
            }
        }
        let (ra, rb) = (rank(a), rank(b))
        return ra == rb ? a < b : ra < rb
    }
}

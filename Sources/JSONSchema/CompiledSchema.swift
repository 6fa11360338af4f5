/// A compiled subschema: keywords resolved once, so validation does no look-ups by name.
final class SchemaNode: @unchecked Sendable {
    // Filled in once by `SchemaCompiler` before the node is shared; immutable afterwards.
    var boolean: Bool?
    var keywords: ContiguousArray<CompiledKeyword> = []
    /// Whether `unevaluatedProperties`/`unevaluatedItems` is among the keywords: then this node
    /// collects annotations from its other keywords.
    var hasUnevaluated = false
    let location: String
    /// The base URI of the schema resource this node belongs to (for the dynamic scope).
    let resourceBase: String

    init(location: String, resourceBase: String) {
        self.location = location
        self.resourceBase = resourceBase
    }
}

/// A reference to a compiled node that costs no reference counting: the validator keeps every
/// node alive for its whole life (`JSONSchemaValidator.nodes`), so the evaluator can follow
/// these freely on the hot path.
struct NodeRef: @unchecked Sendable {
    unowned(unsafe) let node: SchemaNode

    init(_ node: SchemaNode) { self.node = node }

    var boolean: Bool? { node.boolean }
    var keywords: ContiguousArray<CompiledKeyword> { node.keywords }
    var hasUnevaluated: Bool { node.hasUnevaluated }
    var location: String { node.location }
    var resourceBase: String { node.resourceBase }
}

/// What in-place applicators found evaluated, for `unevaluatedProperties`/`unevaluatedItems`.
struct Annotations {
    // Sets are created on first insertion, so the common no-annotation path stays trivial.
    private(set) var propertySet: Set<String>?
    var allProperties = false
    var itemsPrefix = 0
    var allItems = false
    private(set) var itemSet: Set<Int>?

    mutating func insertProperty(_ name: String) {
        if propertySet == nil { propertySet = [] }
        propertySet!.insert(name)
    }

    mutating func insertItem(_ index: Int) {
        if itemSet == nil { itemSet = [] }
        itemSet!.insert(index)
    }

    func hasProperty(_ name: String) -> Bool { propertySet?.contains(name) ?? false }
    func hasItem(_ index: Int) -> Bool { itemSet?.contains(index) ?? false }

    mutating func merge(_ other: Annotations) {
        if let names = other.propertySet { propertySet = (propertySet ?? []).union(names) }
        allProperties = allProperties || other.allProperties
        itemsPrefix = max(itemsPrefix, other.itemsPrefix)
        allItems = allItems || other.allItems
        if let indexes = other.itemSet { itemSet = (itemSet ?? []).union(indexes) }
    }
}

/// A `$dynamicRef`: its static target, and, when the target bookends a `$dynamicAnchor`, the
/// anchor's candidates by resource, searched through the dynamic scope at run time.
final class DynamicReference: @unchecked Sendable {
    let staticTarget: NodeRef
    let anchor: String?
    var candidates: [String: NodeRef] = [:]

    init(staticTarget: NodeRef, anchor: String?) {
        self.staticTarget = staticTarget
        self.anchor = anchor
    }
}

/// One keyword of a compiled schema, with its name for error output.
struct CompiledKeyword: Sendable {
    let name: String
    let kind: KeywordKind
}

/// The set of JSON types allowed by `type`.
struct TypeMask: OptionSet, Sendable {
    let rawValue: UInt8
    static let null = TypeMask(rawValue: 1)
    static let boolean = TypeMask(rawValue: 2)
    static let integer = TypeMask(rawValue: 4)
    static let number = TypeMask(rawValue: 8)
    static let string = TypeMask(rawValue: 16)
    static let array = TypeMask(rawValue: 32)
    static let object = TypeMask(rawValue: 64)

    init(rawValue: UInt8) { self.rawValue = rawValue }

    init?(name: String) {
        switch name {
        case "null": self = .null
        case "boolean": self = .boolean
        case "integer": self = .integer
        case "number": self = .number
        case "string": self = .string
        case "array": self = .array
        case "object": self = .object
        default: return nil
        }
    }

    func admits(_ value: JSONValue) -> Bool {
        switch value {
        case .null: contains(.null)
        case .bool: contains(.boolean)
        case .number(let n): contains(.number) || (contains(.integer) && n.isInteger)
        case .string: contains(.string)
        case .array: contains(.array)
        case .object: contains(.object)
        }
    }

    var names: [String] {
        [(TypeMask.null, "null"), (.boolean, "boolean"), (.integer, "integer"), (.number, "number"),
         (.string, "string"), (.array, "array"), (.object, "object")].filter { contains($0.0) }.map(\.1)
    }
}

/// The kinds of assertion and applicator keywords, with their compiled operands.
enum KeywordKind: Sendable {
    case type(TypeMask)
    case enumeration([JSONValue])
    case constant(JSONValue)
    case multipleOf(Double)
    case minimum(Double)
    case maximum(Double)
    case exclusiveMinimum(Double)
    case exclusiveMaximum(Double)
    case minLength(Int)
    case maxLength(Int)
    case pattern(ECMARegex)
    case minItems(Int)
    case maxItems(Int)
    case uniqueItems
    case contains(NodeRef, min: Int, max: Int?)
    case minProperties(Int)
    case maxProperties(Int)
    case required([String])
    case dependentRequired([(String, [String])])
    case properties([(String, NodeRef)])
    case patternProperties([(ECMARegex, NodeRef)])
    case additionalProperties(NodeRef, known: Set<String>, patterns: [ECMARegex])
    case propertyNames(NodeRef)
    case prefixItems([NodeRef])
    case items(NodeRef, from: Int)
    case allOf([NodeRef])
    /// `allOf` of `if {properties: {P: {const: c}}, required: [P]} then …` entries: a look-up
    /// of P picks the `then` to apply instead of trying every `if` (the alternatives stay for
    /// error reporting and annotations).
    case discriminatedAllOf(Discriminator, alternatives: [NodeRef])
    case anyOf([NodeRef])
    case oneOf([NodeRef])
    case not(NodeRef)
    case conditional(if: NodeRef, then: NodeRef?, else: NodeRef?)
    case dependentSchemas([(String, NodeRef)])
    case ref(NodeRef)
    case dynamicRef(DynamicReference)
    case unevaluatedProperties(NodeRef)
    case unevaluatedItems(NodeRef)
    case format(FormatAssertion)
}

/// The compiled form of a discriminated `allOf` (see `KeywordKind.discriminatedAllOf`).
struct Discriminator: Sendable {
    let property: String
    /// Branch indexes by constant (verified by code points on a hit).
    let branches: [String: [Int]]
    let constants: [String]
    let thens: [NodeRef]
}

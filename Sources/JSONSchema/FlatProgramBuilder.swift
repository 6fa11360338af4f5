/// Builds a `FlatProgram`'s tables from a compiled `SchemaNode` graph.
struct FlatProgramBuilder {
    private(set) var nodes: [FlatNode] = []
    private(set) var instructions: [FlatInstruction] = []
    private(set) var nodeLists: [Int32] = []
    private(set) var members: [FlatMember] = []
    private(set) var strings = StringTable()
    private(set) var values: [JSONValue] = []
    private(set) var regexes: [ECMARegex] = []
    private(set) var formats: [FormatAssertion] = []
    private(set) var fallbacks: [FlatFallback] = []
    private(set) var root: Int32 = 0

    private var indexes: [ObjectIdentifier: Int32] = [:]
    private var pending: [(SchemaNode, Int32)] = []

    /// Nil when some reachable node needs annotations or the dynamic scope.
    init?(root: SchemaNode) {
        self.root = index(of: root)
        while let (node, index) = pending.popLast() {
            guard build(node, at: index) else { return nil }
        }
    }

    /// The node's index, assigning one (and queueing the node) on first sight. A node that is nothing
    /// but a `$ref` stands for its target, so references cost nothing at validation time.
    private mutating func index(of start: SchemaNode) -> Int32 {
        var node = start
        var seen: Set<ObjectIdentifier> = [ObjectIdentifier(node)]
        while node.boolean == nil, node.keywords.count == 1, case .ref(let target) = node.keywords[0].kind,
            seen.insert(ObjectIdentifier(target.node)).inserted
        {
            node = target.node
        }
        if let known = indexes[ObjectIdentifier(node)] {
            indexes[ObjectIdentifier(start)] = known
            return known
        }
        let index = Int32(nodes.count)
        nodes.append(FlatNode())
        indexes[ObjectIdentifier(node)] = index
        indexes[ObjectIdentifier(start)] = index
        pending.append((node, index))
        return index
    }

    private mutating func list(_ children: [NodeRef]) -> (Int32, Int32) {
        let indexes = children.map { index(of: $0.node) }
        let start = Int32(nodeLists.count)
        nodeLists += indexes
        return (start, Int32(nodeLists.count))
    }

    private mutating func build(_ node: SchemaNode, at index: Int32) -> Bool {
        var flat = FlatNode()
        if let boolean = node.boolean {
            flat.boolean = boolean ? 1 : 0
            nodes[Int(index)] = flat
            return true
        }
        if node.hasUnevaluated { return false }
        var string: [FlatInstruction] = []
        var number: [FlatInstruction] = []
        var object: [FlatInstruction] = []
        var array: [FlatInstruction] = []
        var any: [FlatInstruction] = []
        var required: [String] = []
        var properties: [(String, NodeRef)]?

        for (position, keyword) in node.keywords.enumerated() {
            switch keyword.kind {
            case .type(let mask): flat.types = mask.rawValue
            case .minLength(let n): string.append(FlatInstruction(op: .minLength, a: Int32(clamping: n)))
            case .maxLength(let n): string.append(FlatInstruction(op: .maxLength, a: Int32(clamping: n)))
            case .pattern(let regex):
                string.append(FlatInstruction(op: .pattern, a: Int32(regexes.count)))
                regexes.append(regex)
            case .format(let format):
                string.append(FlatInstruction(op: .format, a: Int32(formats.count)))
                formats.append(format)
            case .minimum(let limit): number.append(FlatInstruction(op: .minimum, number: limit))
            case .maximum(let limit): number.append(FlatInstruction(op: .maximum, number: limit))
            case .exclusiveMinimum(let limit): number.append(FlatInstruction(op: .exclusiveMinimum, number: limit))
            case .exclusiveMaximum(let limit): number.append(FlatInstruction(op: .exclusiveMaximum, number: limit))
            case .multipleOf(let divisor): number.append(FlatInstruction(op: .multipleOf, number: divisor))
            case .required(let names): required += names
            case .properties(let children): properties = children
            case .minProperties(let n): object.append(FlatInstruction(op: .minProperties, a: Int32(clamping: n)))
            case .maxProperties(let n): object.append(FlatInstruction(op: .maxProperties, a: Int32(clamping: n)))
            case .minItems(let n): array.append(FlatInstruction(op: .minItems, a: Int32(clamping: n)))
            case .maxItems(let n): array.append(FlatInstruction(op: .maxItems, a: Int32(clamping: n)))
            case .items(let child, let from): array.append(FlatInstruction(op: .items, a: self.index(of: child.node), b: Int32(clamping: from)))
            case .prefixItems(let children):
                let (a, b) = list(children)
                array.append(FlatInstruction(op: .prefixItems, a: a, b: b))
            case .constant(let value):
                any.append(FlatInstruction(op: .constant, a: Int32(values.count)))
                values.append(value)
            case .enumeration(let options):
                any.append(FlatInstruction(op: .enumeration, a: Int32(values.count), b: Int32(values.count + options.count)))
                values += options
            case .allOf(let children):
                let (a, b) = list(children)
                any.append(FlatInstruction(op: .allOf, a: a, b: b))
            case .anyOf(let children):
                let (a, b) = list(children)
                any.append(FlatInstruction(op: .anyOf, a: a, b: b))
            case .oneOf(let children):
                let (a, b) = list(children)
                any.append(FlatInstruction(op: .oneOf, a: a, b: b))
            case .not(let child): any.append(FlatInstruction(op: .not, a: self.index(of: child.node)))
            case .conditional(let condition, let then, let otherwise):
                any.append(
                    FlatInstruction(
                        op: .conditional, a: self.index(of: condition.node), b: then.map { self.index(of: $0.node) } ?? -1,
                        c: otherwise.map { self.index(of: $0.node) } ?? -1))
            case .ref(let target): any.append(FlatInstruction(op: .ref, a: self.index(of: target.node)))
            case .discriminatedAllOf(let discriminator, _):
                let branches = discriminator.thens.enumerated().map { i, then in
                    FlatMember(name: strings.intern(discriminator.constants[i]), child: self.index(of: then.node), required: false)
                }
                let start = Int32(members.count)
                members += branches
                var instruction = FlatInstruction(op: .discriminated, a: start, b: Int32(members.count), c: strings.intern(discriminator.property))
                // (Interned: equal constants have the same index.)
                instruction.distinct = Set(branches.map(\.name)).count == branches.count
                any.append(instruction)
            case .dynamicRef, .unevaluatedProperties, .unevaluatedItems:
                return false
            case .uniqueItems, .contains, .dependentRequired, .patternProperties, .additionalProperties, .propertyNames, .dependentSchemas:
                any.append(FlatInstruction(op: .fallback, a: Int32(fallbacks.count)))
                fallbacks.append(FlatFallback(node: NodeRef(node), keyword: position))
            }
        }
        if properties != nil || !required.isEmpty {
            // One table for both keywords, so each name is looked up once.
            var table: [FlatMember] = []
            for (name, child) in properties ?? [] {
                table.append(FlatMember(name: strings.intern(name), child: self.index(of: child.node), required: required.contains { JSONValue.sameCodePoints($0, name) }))
            }
            for name in required where !(properties ?? []).contains(where: { JSONValue.sameCodePoints($0.0, name) }) {
                table.append(FlatMember(name: strings.intern(name), child: -1, required: true))
            }
            let start = Int32(members.count)
            members += table
            object.insert(FlatInstruction(op: .members, a: start, b: Int32(members.count)), at: 0)
        }
        flat.string = append(string)
        flat.number = append(number)
        flat.object = append(object)
        flat.array = append(array)
        flat.any = append(any)
        nodes[Int(index)] = flat
        return true
    }

    private mutating func append(_ run: [FlatInstruction]) -> FlatRange {
        let start = Int32(instructions.count)
        instructions += run
        return FlatRange(start: start, end: Int32(instructions.count))
    }
}

/// Interned strings: each distinct string once, by index.
struct StringTable {
    private(set) var values: [String] = []
    /// Keyed by bytes: Swift's `String` equality would merge canonically equivalent names, which JSON tells apart.
    private var positions: [[UInt8]: Int32] = [:]

    mutating func intern(_ string: String) -> Int32 {
        let bytes = Array(string.utf8)
        if let known = positions[bytes] { return known }
        let position = Int32(values.count)
        values.append(string)
        positions[bytes] = position
        return position
    }
}

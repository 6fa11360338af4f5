import JSONSchema

/// Where the contract's schemas live and which one is the entry point.
public enum ContractSchemas {
    /// The retrieval URI prefix the `schemas/` directory is registered under. The files' own
    /// `$id`s take precedence; this only matters for files without one.
    public static let uriPrefix = "https://schemas.progress-bridge.dev/v1/"
    /// The envelope schema: what every Kafka message value must satisfy.
    public static let envelopeURI = uriPrefix + "envelope.schema.json"

    /// Compiles the envelope validator from a registry holding the `schemas/` files.
    /// Fails (naming the keyword and location) if a schema uses a keyword the validator does not know.
    public static func envelopeValidator(from registry: SchemaRegistry) throws(SchemaError) -> JSONSchemaValidator {
        try JSONSchemaValidator(registry: registry, uri: envelopeURI, options: ValidatorOptions(formatAssertion: false, unknownKeywords: .reject))
    }
}

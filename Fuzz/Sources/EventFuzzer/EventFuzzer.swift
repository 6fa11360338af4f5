import Foundation
import FuzzDriver
// Debug builds are testable: the fuzzer also holds the validator's flat fast path against its node walker.
@testable import JSONSchema
import ProgressContract

/// The contract's schemas (`FUZZ_SCHEMAS` overrides the directory).
let registry: SchemaRegistry = {
    let directory = ProcessInfo.processInfo.environment["FUZZ_SCHEMAS"] ?? "../schemas"
    var registry = SchemaRegistry()
    do {
        try registry.addDirectory(directory, uriPrefix: ContractSchemas.uriPrefix)
        return registry
    } catch {
        fatalError("cannot load the schemas from \(directory): \(error)")
    }
}()

/// The contract's decoder, built once.
let decoder = EventDecoder(validator: try! ContractSchemas.envelopeValidator(from: registry))

/// The same envelope schema judged by the node-walking evaluator only.
let nodeWalker: JSONSchemaValidator = {
    var options = ValidatorOptions(formatAssertion: false, unknownKeywords: .reject)
    options.flatProgram = false
    return try! JSONSchemaValidator(registry: registry, uri: ContractSchemas.envelopeURI, options: options)
}()
let flat = try! ContractSchemas.envelopeValidator(from: registry)

/// Every input must end as an event or as a rejection with a reason — never a crash or a hang.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    switch decoder.decode(bytes) {
    case .success(let event):
        precondition(!event.eventId.isEmpty && event.jobId.hasPrefix("job_"), "a decoded event must satisfy the envelope")
    case .failure(let rejection):
        precondition(!rejection.detail.isEmpty, "a rejection must say why")
    }
    if let document = try? JSONParser().parse(bytes) {
        precondition(flat.isValid(document) == nodeWalker.isValid(document), "the flat fast path and the node walker disagree")
    }
    return 0
}

@_cdecl("EventFuzzer_main")
func entryPoint(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

import FuzzDriver
import JSONSchema
import SubscriberProtocol

/// What subscribers and REST clients send, fuzzed: the first byte chooses what the rest is —
/// a subscription URL's query, a WebSocket client message, or a REST list query. Every input must end
/// as a bounded request or a refusal — never a crash, a hang, or a value outside its documented range.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = UnsafeBufferPointer(start: data + 1, count: size - 1)
    let text = String(decoding: bytes, as: UTF8.self)
    switch data[0] % 4 {
    case 0:
        if case .success(let request) = SubscriptionRequest.parse(query: QueryString(text)) {
            switch request.target {
            case .job(let id): precondition(JobIdentifier.isValid(id), "an accepted job_id must match the contract")
            case .jobs(.all): precondition(request.lastSeq == nil, "a feed does not resume by last_seq")
            case .jobs(.listed(let ids)):
                precondition((1...SubscriptionRequest.maxListedJobs).contains(ids.count), "a feed's list is bounded")
                precondition(ids.allSatisfy(JobIdentifier.isValid) && Set(ids).count == ids.count, "listed ids are valid and distinct")
            }
            precondition(request.connectionId.utf8.count <= 128, "connection ids are bounded")
            if let lastSeq = request.lastSeq { precondition((0...maxSequenceNumber).contains(lastSeq), "last_seq is bounded") }
        }
    case 1:
        switch ClientMessage.parse(text, maxBytes: 64 * 1024) {
        case .success(.ping(let id)):
            if let id { precondition(id.serialized().utf8.count <= ClientMessage.maxPingIdBytes, "ping ids are bounded") }
        case .success(.resume(let lastSeq)):
            precondition((0...maxSequenceNumber).contains(lastSeq), "last_seq is bounded")
        case .success(.command(let action, _, _, let id)):
            precondition(ClientMessage.commandActions.contains(action), "only known commands")
            if let id { precondition(id.serialized().utf8.count <= ClientMessage.maxPingIdBytes, "command ids are bounded") }
        case .failure(let refusal):
            precondition(!refusal.code.isEmpty && !refusal.message.isEmpty, "a refusal says why")
        }
    case 2:
        if case .success(let query) = JobListQuery.parse(QueryString(text)) {
            precondition((1...1000).contains(query.limit) && (0...1_000_000_000).contains(query.offset), "paging is bounded")
        }
    default:
        if case .success(let query) = VideoListQuery.parse(QueryString(text)) {
            precondition((1...1000).contains(query.limit) && (0...1_000_000_000).contains(query.offset), "paging is bounded")
            precondition((query.search?.count ?? 0) <= 256 * 3, "the search text is bounded")
        }
    }
    return 0
}

@_cdecl("SubscriberFuzzer_main")
func entryPoint(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

import Foundation
import JSONSchema
import Kafka
import Logging
import ProgressAggregation
import ProgressContract
import SubscriberProtocol
import Synchronization
import Testing

@testable import ProgressBridge

/// Builds decoded events of one job directly (no JSON), for store-level tests.
struct StoreEvents {
    let jobId: String
    var counter = 0
    let origin: Int64 = 1_795_515_330_000

    init(_ jobId: String) { self.jobId = jobId }

    mutating func make(_ payload: EventPayload, type: EventType, at: Int64) -> ProgressEvent {
        counter += 1
        return ProgressEvent(eventId: "\(jobId)-\(counter)", type: type, jobId: jobId, occurredAt: origin + at, seq: Int64(counter), payload: payload)
    }

    mutating func running(at: Int64 = 0) -> ProgressEvent {
        make(.jobStateChanged(from: nil, to: .running, reason: nil, job: nil), type: .jobStateChanged, at: at)
    }

    mutating func completed(_ video: String, at: Int64, message: String? = nil) -> ProgressEvent {
        make(.videoCompleted(videoId: video, processingMs: 1000, outputURL: message, attempt: 1), type: .videoCompleted, at: at)
    }
}

/// Drains what an outbox holds now (without waiting).
func drain(_ outbox: Outbox) async -> [OutboundMessage] {
    var messages: [OutboundMessage] = []
    outbox.close(.finished)  // what is queued stays to be taken
    while let m = outbox.take() { messages.append(m) }
    return messages
}

func decoded(_ message: OutboundMessage) -> JSONValue { try! JSONParser().parse(message.text) }

@Suite("Resume protocol")
struct ResumeProtocolTests {
    @Test func aLastSeqAheadOfTheJobGetsAFreshSnapshotNotSilence() async {
        let store = JobStore(metrics: BridgeMetrics())
        var e = StoreEvents("job_resume")
        _ = store.apply(e.running())
        _ = store.apply(e.completed("v1", at: 1))
        let outbox = Outbox(capacity: 16, metrics: BridgeMetrics())
        store.subscribe(jobId: "job_resume", subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: maxSequenceNumber, now: 0)
        let types = await drain(outbox).map(\.type)
        #expect(types == ["error", "job.snapshot"])
    }

    @Test func resumeOkCarriesSeqZeroAndTheReplayFollows() async {
        let store = JobStore(metrics: BridgeMetrics())
        var e = StoreEvents("job_replay")
        _ = store.apply(e.running())
        for i in 1...5 { _ = store.apply(e.completed("v\(i)", at: Int64(i))) }
        let outbox = Outbox(capacity: 16, metrics: BridgeMetrics())
        store.subscribe(jobId: "job_replay", subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: 3, now: 0)
        let messages = await drain(outbox)
        #expect(messages.map(\.type) == ["resume.ok", "video.completed", "video.completed", "video.completed"])
        #expect(messages.map(\.seq) == [0, 4, 5, 6])
        #expect(decoded(messages[0])["data"]?["to_seq"]?.int64Value == 6)
    }
}

@Suite("Store races and bounds")
struct StoreRaceTests {
    /// Subscribers come and go on jobs that are being created, while events arrive: every event must end up
    /// applied (none lost to a channel dropped meanwhile), and each subscriber's seqs strictly increase without gaps.
    @Test func churnNeverLosesAnEventNorReordersASubscriber() async {
        let store = JobStore(metrics: BridgeMetrics())
        let jobs = (0..<8).map { "job_churn_\($0)" }
        let perJob = 300
        await withTaskGroup(of: [[Int64]].self) { group in
            group.addTask {
                var factories = jobs.map { StoreEvents($0) }
                for i in 0..<perJob {
                    for j in factories.indices { _ = store.apply(factories[j].completed("v\(i)", at: Int64(i))) }
                }
                return []
            }
            for worker in 0..<4 {
                group.addTask {
                    var seen: [[Int64]] = []
                    for round in 0..<150 {
                        let job = jobs[(worker + round) % jobs.count]
                        let outbox = Outbox(capacity: 100_000, metrics: BridgeMetrics())
                        let id = ObjectIdentifier(outbox)
                        store.subscribe(jobId: job, subscriber: id, outbox: outbox, lastSeq: nil, now: 0)
                        await Task.yield()
                        store.unsubscribe(jobId: job, subscriber: id)
                        seen.append(await drain(outbox).filter { $0.type != "error" }.map(\.seq))
                    }
                    return seen
                }
            }
            for await perSubscriber in group {
                for seqs in perSubscriber {
                    // A snapshot (its seq) then live events: consecutive, strictly increasing.
                    #expect(zip(seqs, seqs.dropFirst()).allSatisfy { $1 == $0 + 1 }, "\(seqs.prefix(10))")
                }
            }
        }
        for job in jobs { #expect(store.aggregate(job)?.eventsApplied == perJob) }
        #expect(store.subscriberCount == 0)
    }

    @Test func unwatchedUnknownJobsLeaveNoChannelBehind() {
        let store = JobStore(metrics: BridgeMetrics())
        for i in 0..<100 {
            let outbox = Outbox(capacity: 4, metrics: BridgeMetrics())
            store.subscribe(jobId: "job_nobody_\(i)", subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: nil, now: 0)
            store.unsubscribe(jobId: "job_nobody_\(i)", subscriber: ObjectIdentifier(outbox))
        }
        #expect(store.channelCount == 0)
    }

    @Test func jobsBeyondTheCapAreRejectedAndKnownJobsGoOn() {
        let store = JobStore(limits: StoreLimits(maxJobs: 2), metrics: BridgeMetrics())
        var a = StoreEvents("job_a")
        var b = StoreEvents("job_b")
        var c = StoreEvents("job_c")
        #expect(store.apply(a.running()) == .applied)
        #expect(store.apply(b.running()) == .applied)
        guard case .rejected(let rejection) = store.apply(c.running()) else {
            Issue.record("a third job must be refused")
            return
        }
        #expect(rejection.reason == .limitExceeded)
        #expect(store.apply(a.completed("v1", at: 1)) == .applied)
        #expect(store.trackedJobs == 2)
        // Endless fresh job ids past the cap leave nothing behind.
        for i in 0..<500 {
            var fresh = StoreEvents("job_fresh_\(i)")
            _ = store.apply(fresh.running())
        }
        #expect(store.channelCount == 2)
    }

    /// A job whose first event its aggregate refuses (an impossible transition) leaves nothing behind: no aggregate, no
    /// channel, nothing counted — endless fresh job ids cannot grow the store. A refused event of a known job leaves
    /// its aggregate as it was.
    @Test func aJobWhoseFirstEventIsRefusedLeavesNothingBehind() {
        let store = JobStore(metrics: BridgeMetrics())
        for i in 0..<500 {
            var fresh = StoreEvents("job_refused_\(i)")
            let outcome = store.apply(fresh.make(.jobStateChanged(from: .completed, to: .running, reason: nil, job: nil), type: .jobStateChanged, at: 0))
            guard case .rejected(let rejection) = outcome else {
                Issue.record("an impossible first transition must be refused, got \(outcome)")
                return
            }
            #expect(rejection.reason == .invalidTransition)
        }
        #expect(store.channelCount == 0 && store.trackedJobs == 0)
        #expect(store.aggregate("job_refused_7") == nil)

        var known = StoreEvents("job_refused_7")
        #expect(store.apply(known.running(at: 5)) == .applied)
        #expect(store.apply(known.completed("v1", at: 6)) == .applied)
        let before = store.aggregate("job_refused_7")
        #expect(before?.firstEventAt == known.origin + 5 && before?.eventsApplied == 2)
        let refused = store.apply(known.make(.jobStateChanged(from: .completed, to: .running, reason: nil, job: nil), type: .jobStateChanged, at: 7))
        #expect(refused != .applied)
        let after = store.aggregate("job_refused_7")
        #expect(after?.eventsApplied == 2 && after?.videos == before?.videos && after?.progress() == before?.progress())
        #expect(store.channelCount == 1 && store.trackedJobs == 1)
    }

    @Test func snapshotsAreBoundedInBytes() async {
        let store = JobStore(limits: StoreLimits(snapshotBytes: 64 * 1024), metrics: BridgeMetrics())
        var e = StoreEvents("job_wide")
        let big = String(repeating: "\u{1}", count: 2000)  // escaped six-fold in JSON
        for i in 0..<200 { _ = store.apply(e.completed("v\(i)", at: Int64(i), message: big)) }
        let outbox = Outbox(capacity: 10, metrics: BridgeMetrics())
        store.subscribe(jobId: "job_wide", subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: nil, now: 0)
        let snapshot = try! #require(await drain(outbox).first)
        #expect(snapshot.byteCount < 64 * 1024 + 16 * 1024, "videos capped at 64 KiB, plus the job")
        let data = decoded(snapshot)["data"]
        #expect(data?["videos_truncated"]?.boolValue == true)
        #expect((data?["videos"]?.arrayValue?.count ?? 0) >= 1)
    }

    @Test func historyIsBoundedInBytes() async {
        let store = JobStore(limits: StoreLimits(historyPerJob: 1000, historyBytesPerJob: 64 * 1024), metrics: BridgeMetrics())
        var e = StoreEvents("job_big")
        let big = String(repeating: "x", count: 2000)
        for i in 0..<200 { _ = store.apply(e.completed("v\(i)", at: Int64(i), message: big)) }
        // Resuming from the start: the history no longer has it all, so a snapshot comes instead of 200 big messages.
        let outbox = Outbox(capacity: 10_000, metrics: BridgeMetrics())
        store.subscribe(jobId: "job_big", subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: 0, now: 0)
        #expect(await drain(outbox).map(\.type) == ["error", "job.snapshot"])
    }
}

@Suite("Outbox bounds")
struct OutboxBoundTests {
    static func message(bytes: Int, seq: Int64 = 1) -> OutboundMessage {
        .make(type: "video.updated", jobId: "job_x", seq: seq, ts: 0, occurredAt: nil, data: .string(String(repeating: "y", count: bytes)))
    }

    @Test func aQueueOverItsByteCapacityOverflowsAndReleasesItsBytes() {
        let metrics = BridgeMetrics()
        let outbox = Outbox(capacity: 1000, byteCapacity: 10_000, metrics: metrics)
        for i in 0..<3 { outbox.enqueue(Self.message(bytes: 3000, seq: Int64(i))) }
        #expect(outbox.closure == nil)
        outbox.enqueue(Self.message(bytes: 3000, seq: 9))
        #expect(outbox.closure == .overflowed)
        #expect(outbox.queuedBytes == 0)
        #expect(metrics.render().contains("progress_bridge_send_queue_bytes 0"))
    }

    @Test func oneLargeMessageStillReachesAReader() async {
        let outbox = Outbox(capacity: 10, byteCapacity: 1000, metrics: BridgeMetrics())
        outbox.enqueue(Self.message(bytes: 5000))
        #expect(outbox.closure == nil)
        #expect(outbox.take()?.byteCount ?? 0 > 5000)
    }

    @Test func anOverflowTellsWhoeverWaitsForTheCloseOnceWithItsReason() {
        let outbox = Outbox(capacity: 2, metrics: BridgeMetrics())
        let told = Mutex<[OutboxClosure]>([])
        outbox.whenClosed { reason in told.withLock { $0.append(reason) } }
        for i in 0..<3 { outbox.enqueue(Self.message(bytes: 10, seq: Int64(i))) }
        outbox.close(.shuttingDown)
        #expect(outbox.closure == .overflowed)
        #expect(told.withLock { $0 } == [.overflowed])
        // Closed already: a late handler is told at once.
        outbox.whenClosed { reason in told.withLock { $0.append(reason) } }
        #expect(told.withLock { $0 } == [.overflowed, .overflowed])
    }
}

@Suite("What clients send")
struct ClientInputTests {
    @Test func lastSeqBeyondTheSafeRangeIsRefused() {
        for bad in ["9223372036854775807", "9007199254740992", "-1", "1e3", "99999999999999999999"] {
            #expect((try? SubscriptionRequest.parse(jobId: "job_1", connectionId: nil, token: nil, lastSeq: bad).get()) == nil, "\(bad)")
        }
        #expect((try? SubscriptionRequest.parse(jobId: "job_1", connectionId: nil, token: nil, lastSeq: "9007199254740991").get())?.lastSeq == maxSequenceNumber)
    }

    @Test func clientMessagesAreBounded() {
        guard case .failure(let refusal) = ClientMessage.parse(#"{"type":"resume","last_seq":9223372036854775807}"#, maxBytes: 65536) else {
            Issue.record("a last_seq beyond 2^53 − 1 must be refused")
            return
        }
        #expect(refusal.code == "invalid_message")
        #expect(ClientMessage.parse(#"{"type":"resume","last_seq":7}"#, maxBytes: 65536) == .success(.resume(lastSeq: 7)))
        let longId = String(repeating: "i", count: 200)
        guard case .failure = ClientMessage.parse(#"{"type":"ping","id":"\#(longId)"}"#, maxBytes: 65536) else {
            Issue.record("a 200-byte ping id must be refused")
            return
        }
        guard case .failure = ClientMessage.parse(#"{"type":"ping","id":{"a":[1,2,3]}}"#, maxBytes: 65536) else {
            Issue.record("a structured ping id must be refused")
            return
        }
        #expect(ClientMessage.parse(#"{"type":"ping","id":42}"#, maxBytes: 65536) == .success(.ping(id: .number(JSONNumber(Int64(42))))))
    }

    @Test func listQueriesAreBounded() {
        func query(_ q: [String: String]) -> Result<VideoListQuery, QueryError> { VideoListQuery.parse { q[$0] } }
        #expect((try? query(["offset": "99999999999999999999"]).get()) == nil)
        #expect((try? query(["limit": "0"]).get()) == nil)
        #expect((try? query(["q": String(repeating: "q", count: 300)]).get()) == nil)
        #expect((try? query(["sort": "row_index", "limit": "5"]).get())?.ascending == true)
    }
}

@Suite("Dead letters")
struct DeadLetterTests {
    static func message(value: [UInt8], headers: [KafkaHeader] = [], key: [UInt8]? = Array("job_1".utf8)) -> KafkaMessage {
        KafkaMessage(topic: "progress.events", partition: 3, offset: 42, key: key, value: value, headers: headers, timestampMs: nil)
    }

    @Test func anOversizedOriginalIsTruncatedAndSaysSo() {
        let value = [UInt8](repeating: 0x41, count: 50_000)
        let (record, truncated) = DeadLetter.record(
            for: Self.message(value: value), rejection: Rejection(.malformedJSON, "too large"), topic: "dlq", maxBytes: 8192)
        #expect(truncated)
        #expect((record.value?.count ?? 0) + (record.key?.count ?? 0) + DeadLetter.size(of: record.headers) <= 8192)
        let headers = Dictionary(record.headers.map { ($0.name, String(decoding: $0.value ?? [], as: UTF8.self)) }, uniquingKeysWith: { a, _ in a })
        #expect(headers["x-dlq-truncated"] == "true")
        #expect(headers["x-dlq-original-size"] == "50000")
        #expect(headers["x-dlq-original-sha256"]?.count == 64)
        #expect(headers["x-dlq-source-offset"] == "42" && headers["x-dlq-source-partition"] == "3")
    }

    @Test func hugeOriginalHeadersAreDroppedAndCounted() {
        let headers = (0..<10).map { KafkaHeader(name: "h\($0)", value: [UInt8](repeating: 1, count: 1000)) }
        let (record, _) = DeadLetter.record(
            for: Self.message(value: [1], headers: headers), rejection: Rejection(.malformedJSON, "x"), topic: "dlq", maxBytes: 8192)
        #expect(record.headers.contains { $0.name == "x-dlq-headers-dropped" && $0.value == Array("10".utf8) })
        #expect(!record.headers.contains { $0.name == "h0" })
    }

    @Test func aSmallOriginalIsKeptWhole() {
        let (record, truncated) = DeadLetter.record(
            for: Self.message(value: Array("{}".utf8), headers: [KafkaHeader(name: "traceparent", string: "00-abc")]),
            rejection: Rejection(.schemaViolation, "x"), topic: "dlq", maxBytes: 900_000)
        #expect(!truncated && record.value == Array("{}".utf8))
        #expect(record.headers.first?.name == "traceparent")
    }
}

@Suite("Trusted proxies")
struct TrustedProxyTests {
    @Test func forwardedAddressesCountOnlyFromTrustedPeers() throws {
        let proxies = try TrustedProxies.parse(["127.0.0.1", "10.1.0.0/16", "fd00::/8"]).get()
        #expect(proxies.clientAddress(peer: "192.0.2.9", forwardedFor: "198.51.100.7", forwarded: nil) == "192.0.2.9")
        #expect(proxies.clientAddress(peer: "127.0.0.1", forwardedFor: "198.51.100.7", forwarded: nil) == "198.51.100.7")
        #expect(proxies.clientAddress(peer: "10.1.2.3", forwardedFor: "203.0.113.5, 198.51.100.7, 10.1.9.9", forwarded: nil) == "198.51.100.7")
        #expect(proxies.clientAddress(peer: "127.0.0.1", forwardedFor: nil, forwarded: #"for="[2001:db8::1]:4711";proto=https"#) == "2001:db8::1")
        #expect(proxies.clientAddress(peer: "127.0.0.1", forwardedFor: "not an address", forwarded: nil) == "127.0.0.1")
        #expect(proxies.clientAddress(peer: "fd12::1", forwardedFor: "192.0.2.44:5555", forwarded: nil) == "192.0.2.44")
        #expect(proxies.clientAddress(peer: "::ffff:127.0.0.1", forwardedFor: "198.51.100.7", forwarded: nil) == "198.51.100.7")
        // 64 forged hops and the real one the proxy appended: the real one is read.
        let forged = (0..<64).map { "203.0.113.\($0)" }.joined(separator: ", ")
        #expect(proxies.clientAddress(peer: "127.0.0.1", forwardedFor: forged + ", 198.51.100.99", forwarded: nil) == "198.51.100.99")
    }

    @Test func badEntriesAreRefused() {
        for bad in ["10.0.0.0/33", "example.com", "1.2.3.4/x", "::1/129"] {
            #expect((try? TrustedProxies.parse([bad]).get()) == nil, "\(bad)")
        }
    }
}

@Suite("JWKS algorithms")
struct JWKSAlgorithmTests {
    @Test func everyKeyGetsExactlyOneAlgorithm() throws {
        let jwks = #"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"},{"kty":"EC","crv":"P-384","kid":"e","x":"a","y":"b"},{"kty":"RSA","kid":"p","alg":"PS256","n":"AQAB","e":"AQAB"}]}"#
        let pinned = try JWKSAlgorithms.pin(jwks)
        #expect(pinned.algorithms == ["r": "RS256", "e": "ES384", "p": "PS256"])
        let rewritten = try JSONParser().parse(pinned.json)
        #expect(rewritten["keys"]?.arrayValue?.compactMap { $0["alg"]?.stringValue } == ["RS256", "ES384", "PS256"])
    }

    @Test func keysWhoseAlgorithmCannotBeKnownAreRefused() {
        #expect(throws: StartupError.self) { try JWKSAlgorithms.pin(#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#) }
        #expect(throws: StartupError.self) { try JWKSAlgorithms.pin(#"{"keys":[{"kty":"RSA","alg":"none","n":"AQAB","e":"AQAB"}]}"#) }
    }
}

@Suite("Corrupt state records")
struct CorruptStateTests {
    /// A state record is input too: extreme numbers in it must not trap when the job is served.
    @Test func extremeTimesInARestoredJobAreServedWithoutTrapping() throws {
        for extreme: Int64 in [.min, .max, -1, 0] {
            let json = #"{"jobId":"job_corrupt","stateField":{},"titleField":{},"totalField":{"value":9223372036854775807,"stamp":[0,0,"e"]},"deadlineField":{},"createdAtField":{"value":\#(extreme),"stamp":[0,0,"e"]},"priorityField":{},"sheetIdField":{},"sheetRangeField":{},"monitorField":{},"errorField":{},"firstEventAt":\#(extreme),"lastEventAt":\#(extreme),"startedAt":\#(extreme),"eventsApplied":-5,"seenOrder":["a"],"seenHead":99}"#
            let aggregate = try JSONDecoder().decode(JobAggregate.self, from: Data(json.utf8))
            let store = JobStore(metrics: BridgeMetrics())
            store.restore(aggregate, seq: .max)
            let outbox = Outbox(capacity: 8, metrics: BridgeMetrics())
            store.subscribe(jobId: "job_corrupt", subscriber: ObjectIdentifier(outbox), outbox: outbox, lastSeq: nil, now: 0)
            _ = store.aggregate("job_corrupt")?.progress().json.serialized()
            var e = StoreEvents("job_corrupt")
            #expect(store.apply(e.completed("v1", at: 1)) == .applied, "the seq was clamped on restore, so it can still grow")
        }
    }
}

import Foundation
import JSONSchema
import Kafka
import ProgressContract
import SubscriberProtocol
import Testing

@testable import ProgressBridge

@Suite("Job-list feeds: job-level messages of many jobs, a jobs.snapshot first, only granted jobs")
struct JobFeedTests {
    let partition = TopicPartition(topic: "progress.events", partition: 0)


    func drained(_ outbox: Outbox) throws -> [JSONValue] {
        var messages: [JSONValue] = []
        while let message = outbox.take() { messages.append(try JSONParser().parse(message.text)) }
        return messages
    }

    @Test func aFeedStartsWithASnapshotOfGrantedJobsThenCarriesTheirJobMessagesOnly() throws {
        let store = JobStore(metrics: BridgeMetrics())
        var offset: Int64 = 0
        func apply(_ event: ProgressEvent) {
            #expect(store.apply(event, at: EventOrigin(partition: partition, offset: offset)) == .applied)
            offset += 1
        }
        apply(stateChange("job_a", to: .running, at: 1_000))
        apply(stateChange("job_secret", to: .running, at: 2_000))
        apply(stateChange("job_b", to: .running, at: 3_000))
        let outbox = Outbox(capacity: 100, metrics: BridgeMetrics())
        let grant = Grant(allJobs: false, jobs: ["job_a", "job_b", "job_c"])
        store.watch(subscriber: ObjectIdentifier(outbox), outbox: outbox, now: 5_000) { grant.allows($0) }
        let first = try drained(outbox)
        #expect(first.count == 1)
        let snapshot = try #require(first.first)
        #expect(snapshot["type"]?.stringValue == "jobs.snapshot" && snapshot["seq"]?.int64Value == 0)
        let entries = snapshot["data"]?["jobs"]?.arrayValue ?? []
        #expect(entries.compactMap { $0["job_id"]?.stringValue } == ["job_b", "job_a"], "granted jobs only, most recently updated first")
        #expect(entries.compactMap { $0["seq"]?.int64Value } == [3, 1], "each job's seq: its offset + 1")
        #expect(entries.first?["job"]?["state"]?.stringValue == "running")
        #expect(snapshot["data"]?["jobs_total"]?.int64Value == 2 && snapshot["data"]?["jobs_truncated"] == .bool(false))

        // Live: job-level messages of granted jobs (a new one included), never video messages, never other jobs.
        apply(stateChange("job_c", to: .running, at: 6_000))
        apply(stateChange("job_secret", to: .completed, at: 6_100))
        apply(
            ProgressEvent(
                eventId: "v1", type: .videoCreated, jobId: "job_a", occurredAt: 6_200, seq: nil,
                payload: .videoCreated(videoId: "vid_1", rowIndex: nil, title: nil)))
        apply(stateChange("job_a", to: .completed, at: 6_300))
        let live = try drained(outbox)
        #expect(live.compactMap { $0["job_id"]?.stringValue } == ["job_c", "job_a"])
        #expect(live.compactMap { $0["type"]?.stringValue } == ["job.state_changed", "job.state_changed"])
        #expect(live.last?["seq"]?.int64Value == 7 && live.last?["data"]?["state"]?.stringValue == "completed")
        #expect(store.subscriberCount == 1)

        store.unwatch(subscriber: ObjectIdentifier(outbox))
        apply(stateChange("job_b", to: .completed, at: 7_000))
        #expect(try drained(outbox).isEmpty, "an unwatched feed gets nothing more")
        #expect(store.subscriberCount == 0)
    }

    /// Feeds attach while events are applied on another thread: whatever interleaving, each feed's first message is
    /// its snapshot, and a client following the rule (per job: the largest seq seen wins, older ones dropped) ends
    /// with every job's final progress.
    @Test func feedsThatAttachMidStreamEndWithEveryJobsFinalState() async throws {
        let store = JobStore(metrics: BridgeMetrics())
        let jobs = (0..<20).map { "job_race_\($0)" }
        let states: [JobState] = [.pending, .running, .pausing, .paused, .running, .completing, .completed]
        let outboxes = (0..<60).map { _ in Outbox(capacity: 100_000, metrics: BridgeMetrics()) }
        let partition = self.partition
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                var offset: Int64 = 0
                for (step, state) in states.enumerated() {
                    for job in jobs {
                        _ = store.apply(stateChange(job, to: state, at: Int64(step) * 1000), at: EventOrigin(partition: partition, offset: offset))
                        offset += 1
                    }
                }
            }
            group.addTask {
                for outbox in outboxes {
                    store.watch(subscriber: ObjectIdentifier(outbox), outbox: outbox, now: 0) { _ in true }
                    await Task.yield()
                }
            }
        }
        let expected = Dictionary(uniqueKeysWithValues: jobs.map { ($0, store.aggregate($0)?.progress().json) })
        for outbox in outboxes {
            let messages = try drained(outbox)
            #expect(messages.first?["type"]?.stringValue == "jobs.snapshot")
            var seen: [String: (seq: Int64, job: JSONValue)] = [:]
            for entry in messages.first?["data"]?["jobs"]?.arrayValue ?? [] {
                if let id = entry["job_id"]?.stringValue, let seq = entry["seq"]?.int64Value, let job = entry["job"] { seen[id] = (seq, job) }
            }
            for message in messages.dropFirst() {
                guard let id = message["job_id"]?.stringValue, let seq = message["seq"]?.int64Value, let job = message["data"] else { continue }
                if seq > (seen[id]?.seq ?? -1) { seen[id] = (seq, job) }
            }
            for job in jobs { #expect(seen[job]?.job == expected[job] ?? nil, "\(job)") }
        }
    }

    @Test func aListedFeedCarriesOnlyItsJobsAndTheSnapshotIsBounded() throws {
        let store = JobStore(limits: StoreLimits(feedSnapshotJobs: 2), metrics: BridgeMetrics())
        for (offset, job) in ["job_1", "job_2", "job_3", "job_4"].enumerated() {
            _ = store.apply(stateChange(job, to: .running, at: Int64(offset) * 1000), at: EventOrigin(partition: partition, offset: Int64(offset)))
        }
        let outbox = Outbox(capacity: 100, metrics: BridgeMetrics())
        let selection = JobSelection.listed(["job_1", "job_3", "job_4"])
        store.watch(subscriber: ObjectIdentifier(outbox), outbox: outbox, now: 0) { selection.includes($0) }
        let snapshot = try #require(try drained(outbox).first)
        #expect(snapshot["data"]?["jobs"]?.arrayValue?.compactMap { $0["job_id"]?.stringValue } == ["job_4", "job_3"])
        #expect(snapshot["data"]?["jobs_total"]?.int64Value == 3 && snapshot["data"]?["jobs_truncated"] == .bool(true))
    }

    @Test func subscriptionTargetsAreParsedAndBounded() {
        func parse(_ query: String) -> Result<SubscriptionRequest, SubscriptionError> { SubscriptionRequest.parse(query: QueryString(query)) }
        #expect((try? parse("jobs=*").get())?.target == .jobs(.all))
        #expect((try? parse("jobs=job_a,job_b,job_a").get())?.target == .jobs(.listed(["job_a", "job_b"])), "repeats count once")
        #expect((try? parse("job_id=job_a").get())?.target == .job("job_a"))
        let tooMany = (0...SubscriptionRequest.maxListedJobs).map { "job_\($0)" }.joined(separator: ",")
        for bad in ["jobs=", "jobs=job_a,,job_b", "jobs=job_a,nope", "jobs=*,job_a", "job_id=job_a&jobs=*", "jobs=*&last_seq=3", "jobs=\(tooMany)", ""] {
            #expect((try? parse(bad).get()) == nil, "\(bad.prefix(60))")
        }
        #expect((try? parse("jobs=" + (0..<SubscriptionRequest.maxListedJobs).map { "job_\($0)" }.joined(separator: ",")).get()) != nil)
    }
}

@Suite("Dashboard files: read once from --web-root, plain names only, revalidated by ETag")
struct WebAssetsTests {
    func directory(_ files: [String: String]) throws -> String {
        let path = NSTemporaryDirectory() + "web-assets-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path + "/sub", withIntermediateDirectories: true)
        for (name, text) in files { try text.write(toFile: path + "/" + name, atomically: true, encoding: .utf8) }
        return path
    }

    @Test func onlyTopLevelPlainFilesAreServedWithTheirTypes() throws {
        let path = try directory(["index.html": "<h1>hi</h1>", "app.js": "export {}", ".env": "SECRET=1", "sub/inner.js": "x", "README.md": "notes"])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let assets = try WebAssets.load(from: path)
        #expect(Set(assets.files.keys) == ["index.html", "app.js"], "no dot files, no subdirectories, no notes")
        #expect(assets.files["app.js"]?.contentType == "text/javascript; charset=utf-8")
        let page = assets.response(for: "index.html", ifNoneMatch: nil)
        #expect(page.status == .ok)
        #expect(page.headers[.contentSecurityPolicy]?.contains("script-src 'self'") == true)
        let tag = try #require(page.headers[.eTag])
        #expect(assets.response(for: "index.html", ifNoneMatch: tag).status == .notModified)
        #expect(assets.response(for: "index.html", ifNoneMatch: "\"other\"").status == .ok)
        #expect(assets.response(for: ".env", ifNoneMatch: nil).status == .notFound)
        for name in ["..", "../x", "a/b", ".env", "", String(repeating: "a", count: 129), "é.js"] {
            #expect(!WebAssets.isPlainName(name), "\(name)")
        }
    }

    @Test func aMissingDirectoryServesNoDashboard() throws {
        let assets = try WebAssets.load(from: "/nonexistent-\(UUID().uuidString)")
        #expect(assets.files.isEmpty)
        #expect(assets.response(for: "index.html", ifNoneMatch: nil).status == .notFound)
    }
}

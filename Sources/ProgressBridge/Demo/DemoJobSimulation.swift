import JSONSchema

/// A small, seeded pseudo-random generator (SplitMix64), so demo runs are reproducible.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One simulated bulk job, as the Python monitor would report it: its events, tick by tick.
/// Pure: time and randomness are passed in.
struct DemoJobSimulation {
    struct Video {
        let id: String
        var state = "pending"
        var progress = 0.0
        var attempt = 1
        var startedAt: Int64 = 0
    }

    let jobId: String
    let title: String
    private(set) var videos: [Video]
    private(set) var seq: Int64 = 0
    private(set) var finished = false
    private var ticks = 0
    private let concurrency: Int
    private let cancelAtTick: Int?
    private var state = "pending"
    private var cancelRequested = false
    private let startedAt: Int64
    static let stages = ["script", "voice", "render", "upload"]

    init(number: Int, videoCount: Int, concurrency: Int, cancel: Bool, now: Int64, rng: inout SplitMix64) {
        self.init(
            jobId: "job_demo_" + String(number).leftPadded(to: 4), title: "Demo campaign #\(number)", videoCount: videoCount, concurrency: concurrency,
            cancel: cancel, now: now, rng: &rng)
    }

    /// A job somebody asked for (a `job.create` command): its id and title are theirs.
    init(jobId: String, title: String, videoCount: Int, concurrency: Int, cancel: Bool, now: Int64, rng: inout SplitMix64) {
        self.jobId = jobId
        self.title = title
        videos = (1...videoCount).map { Video(id: "vid_" + String($0).leftPadded(to: 4)) }
        self.concurrency = concurrency
        cancelAtTick = cancel ? Int.random(in: 20...40, using: &rng) : nil
        startedAt = now
    }

    /// The events of the job's first moment: created, started, its videos announced.
    mutating func start(now: Int64, rng: inout SplitMix64) -> [String] {
        var events: [String] = []
        let job: JSONValue = .object([
            "title": .string(title), "total_videos": int(videos.count), "processing_deadline_ms": int(videos.count * 4_000),
            "created_at": .string(RFC3339.format(milliseconds: now)), "priority": .string(["low", "normal", "high"].randomElement(using: &rng)!),
            "sheet_source": .object(["sheet_id": .string("1A2B3C4D5E6F7G8H9I0J"), "range": .string("A1:Z\(videos.count + 1)")]),
        ])
        events.append(event("job.state_changed", now, rng: &rng, ["from": .null, "to": .string("pending"), "job": job]))
        events.append(event("job.state_changed", now, rng: &rng, ["from": .string("pending"), "to": .string("running")]))
        state = "running"
        for (i, video) in videos.enumerated() {
            events.append(event("video.created", now, rng: &rng, ["video_id": .string(video.id), "row_index": int(i + 2), "title": .string("Video \(i + 1)")]))
        }
        return events
    }

    /// Advances the job by one tick and returns the events that happened.
    mutating func tick(now: Int64, rng: inout SplitMix64) -> [String] {
        guard !finished else { return [] }
        if cancelRequested { return cancel(now: now, rng: &rng) }
        switch state {
        case "pausing":
            // A pause takes a tick: the videos in flight stop.
            state = "paused"
            return [event("job.state_changed", now, rng: &rng, ["from": .string("pausing"), "to": .string("paused"), "reason": .string("paused by operator")])]
        case "paused":
            return []
        default:
            break
        }
        ticks += 1
        var events: [String] = []
        if let cancelAtTick, ticks >= cancelAtTick {
            return cancel(now: now, rng: &rng)
        }
        var active = videos.filter { $0.state == "processing" }.count
        for i in videos.indices {
            switch videos[i].state {
            case "pending" where active < concurrency:
                videos[i].state = "processing"
                videos[i].startedAt = now
                videos[i].progress = 0
                active += 1
                events.append(videoUpdate(i, now, rng: &rng))
            case "processing":
                videos[i].progress = min(100, videos[i].progress + Double.random(in: 8...35, using: &rng)).rounded()
                if videos[i].progress >= 100 {
                    let processingMs = max(1, now - videos[i].startedAt)
                    if Double.random(in: 0..<1, using: &rng) < 0.1 {
                        let retryable = videos[i].attempt < 2 && Bool.random(using: &rng)
                        events.append(
                            event(
                                "video.failed", now, rng: &rng,
                                [
                                    "video_id": .string(videos[i].id), "retryable": .bool(retryable), "attempt": int(videos[i].attempt),
                                    "processing_ms": .number(JSONNumber(processingMs)),
                                    "error": .object(["code": .string("RENDER_TIMEOUT"), "message": .string("renderer did not answer within 30 s")]),
                                ]))
                        if retryable {
                            videos[i].state = "pending"
                            videos[i].attempt += 1
                        } else {
                            videos[i].state = "failed"
                        }
                    } else {
                        videos[i].state = "completed"
                        events.append(
                            event(
                                "video.completed", now, rng: &rng,
                                [
                                    "video_id": .string(videos[i].id), "processing_ms": .number(JSONNumber(processingMs)), "attempt": int(videos[i].attempt),
                                    "output_url": .string("s3://content-outputs/\(jobId)/\(videos[i].id).mp4"),
                                ]))
                    }
                    active -= 1
                } else {
                    events.append(videoUpdate(i, now, rng: &rng))
                }
            default:
                break
            }
        }
        if ticks % 4 == 0 { events.append(progress(now, rng: &rng)) }
        if videos.allSatisfy({ $0.state == "completed" || $0.state == "failed" }) {
            events.append(progress(now, rng: &rng))
            events.append(event("job.state_changed", now, rng: &rng, ["from": .string("running"), "to": .string("completing")]))
            let summary: JSONValue = .object([
                "total_videos": int(videos.count), "completed": int(count("completed")), "failed": int(count("failed")),
                "skipped": int(0), "duration_ms": .number(JSONNumber(now - startedAt)),
            ])
            events.append(event("job.completed", now, rng: &rng, ["summary": summary]))
            finished = true
        }
        return events
    }

    /// Acts on an operator's command (from the command topic), as the monitor would; returns what it says about it.
    mutating func command(_ type: String, now: Int64, rng: inout SplitMix64) -> [String] {
        guard !finished else { return [] }
        switch (type, state) {
        case ("job.pause", "running"):
            state = "pausing"
            return [event("job.state_changed", now, rng: &rng, ["from": .string("running"), "to": .string("pausing"), "reason": .string("paused by operator")])]
        case ("job.resume", "paused"), ("job.resume", "pausing"):
            let from = state
            state = "running"
            return [event("job.state_changed", now, rng: &rng, ["from": .string(from), "to": .string("running")])]
        case ("job.cancel", _):
            cancelRequested = true
            return []
        default:
            return []
        }
    }

    private mutating func cancel(now: Int64, rng: inout SplitMix64) -> [String] {
        var events = [event("job.state_changed", now, rng: &rng, ["from": .string(state), "to": .string("canceling"), "reason": .string("canceled by operator")])]
        for i in videos.indices where videos[i].state == "pending" || videos[i].state == "processing" {
            videos[i].state = "canceled"
            events.append(event("video.updated", now, rng: &rng, ["video_id": .string(videos[i].id), "state": .string("canceled")]))
        }
        events.append(event("job.canceled", now, rng: &rng, ["reason": .string("canceled by operator"), "canceled_by": .string("demo-operator")]))
        finished = true
        return events
    }

    private func count(_ state: String) -> Int { videos.filter { $0.state == state }.count }

    private mutating func progress(_ now: Int64, rng: inout SplitMix64) -> String {
        let terminal = videos.filter { $0.state == "completed" || $0.state == "failed" }.count
        return event(
            "job.progress", now, rng: &rng,
            [
                "total_videos": int(videos.count), "completed": int(count("completed")), "failed": int(count("failed")),
                "processing": int(count("processing")), "percent_complete": .number(JSONNumber((Double(terminal) / Double(videos.count) * 1000).rounded() / 10)),
            ])
    }

    private mutating func videoUpdate(_ i: Int, _ now: Int64, rng: inout SplitMix64) -> String {
        let stage = Self.stages[min(Self.stages.count - 1, Int(videos[i].progress / 25))]
        return event(
            "video.updated", now, rng: &rng,
            [
                "video_id": .string(videos[i].id), "state": .string("processing"), "progress_percent": .number(JSONNumber(videos[i].progress)),
                "stage": .string(stage), "attempt": int(videos[i].attempt),
            ])
    }

    private mutating func event(_ type: String, _ now: Int64, rng: inout SplitMix64, _ data: JSONObject) -> String {
        seq += 1
        return JSONValue.object([
            "schema_version": int(1), "event_id": .string(Self.eventId(now, rng: &rng)), "type": .string(type), "job_id": .string(jobId),
            "occurred_at": .string(RFC3339.format(milliseconds: now)), "seq": .number(JSONNumber(seq)), "data": .object(data),
        ]).serialized()
    }

    /// A ULID-shaped id: 10 characters of time, 16 of randomness (Crockford base 32).
    static func eventId(_ now: Int64, rng: inout SplitMix64) -> String {
        let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
        var chars: [Character] = []
        var t = UInt64(max(0, now))
        for _ in 0..<10 {
            chars.append(alphabet[Int(t % 32)])
            t /= 32
        }
        chars.reverse()
        for _ in 0..<16 { chars.append(alphabet[Int(rng.next() % 32)]) }
        return String(chars)
    }
}

private func int(_ v: Int) -> JSONValue { .number(JSONNumber(Int64(v))) }

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

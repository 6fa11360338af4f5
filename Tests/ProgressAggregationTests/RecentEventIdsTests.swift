import Testing

@testable import ProgressAggregation

/// The remembered event ids against a plain model (the latest `limit` ids in a list): every look-up, every order,
/// through growth, wrapping round, forgetting (which moves entries of a probe run back), restoring and compacting.
@Suite("Recent event ids")
struct RecentEventIdsTests {
    @Test func agreesWithAListOfTheLatestIds() {
        var checks = 0
        for limit in [1, 2, 3, 5, 8, 13, 40, 300] {
            var ids = RecentEventIds()
            var model: [String] = []
            // Ids from a small alphabet, so that many come again (remembered or forgotten by then).
            let alphabet = max(4, limit * 2)
            for step in 0..<(limit * 12 + 50) {
                // Fibonacci hashing of the step: the same well-mixed sequence on every run.
                let id = RememberedEventId("e\(Int((UInt64(step * 8 + limit) &* 0x9E37_79B9_7F4A_7C15) >> 33) % alphabet)")
                #expect(ids.contains(id) == model.contains(id.id), "limit \(limit) step \(step)")
                if !model.contains(id.id) {
                    ids.remember(id, limit: limit)
                    model.append(id.id)
                    if model.count > limit { model.removeFirst() }
                }
                #expect(ids.inOrder.map(\.id) == model, "limit \(limit) step \(step)")
                checks += 1
                // Now and then: through a job's record, or compacted to fewer.
                if step % 37 == 36 {
                    ids = RecentEventIds(ring: ids.ring.map(\.id), head: ids.head)
                }
                if step % 53 == 52, limit > 2 {
                    ids.keepLatest(limit / 2)
                    model = Array(model.suffix(limit / 2))
                }
            }
            for id in model { #expect(ids.contains(RememberedEventId(id))) }
        }
        #expect(checks == [1, 2, 3, 5, 8, 13, 40, 300].map { $0 * 12 + 50 }.reduce(0, +))
    }

    /// Many ids in one probe run: forgetting the oldest moves the later ones back, and every one stays findable.
    @Test func forgettingWithinARunKeepsTheOthersFindable() {
        var ids = RecentEventIds()
        let all = (0..<2_000).map { RememberedEventId("job_x-\($0)") }
        for id in all { ids.remember(id, limit: 500) }
        for (i, id) in all.enumerated() { #expect(ids.contains(id) == (i >= 1_500), "\(i)") }
    }

    /// A job's record from outside: a head out of range counts as 0; a repeated id is remembered until its oldest
    /// place is forgotten.
    @Test func aRecordsRingIsTakenAsItIs() {
        var ids = RecentEventIds(ring: ["a", "b", "a", "c"], head: 99)
        #expect(ids.head == 0 && ids.inOrder.map(\.id) == ["a", "b", "a", "c"])
        #expect(ids.contains(RememberedEventId("a")))
        ids.remember(RememberedEventId("d"), limit: 4)  // forgets the oldest "a", and with it "a"
        #expect(!ids.contains(RememberedEventId("a")) && ids.contains(RememberedEventId("b")) && ids.contains(RememberedEventId("d")))
        // Oldest first from here on: an id remembered next under a higher limit comes after them all.
        var wrapped = RecentEventIds(ring: ["x", "y", "z"], head: 1)
        #expect(wrapped.inOrder.map(\.id) == ["y", "z", "x"])
        wrapped.remember(RememberedEventId("w"), limit: 10)
        #expect(wrapped.inOrder.map(\.id) == ["y", "z", "x", "w"] && wrapped.head == 0)
    }
}

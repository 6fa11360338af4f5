/// The event ids a job remembers for recognising duplicates: the latest ones, in order of arrival, each with its hash
/// taken once, and an index over them.
///
/// Past the limit every applied event forgets the oldest id. A `Set` hashed the kept hash again on each insert and
/// removal (a SipHash run each), and its removal moved the entries after the freed slot; here an id's kept hash finds
/// its slot, and forgetting shifts back only the entries of its own run (linear probing, no tombstones).
struct RecentEventIds: Sendable {
    /// The ids in order of arrival, starting at `head` (a ring once the limit is reached).
    private(set) var ring: [RememberedEventId] = []
    /// Where the oldest id is, once the ring is full.
    private(set) var head = 0
    /// Positions in `ring`, or -1; a power of two long, at most half full.
    private var slots: [Int32] = []

    init() {}

    /// The ids `ring`, oldest at `head` (as a job's record keeps them; a `head` out of range counts as 0), kept
    /// oldest first from here on (so that ids remembered next follow them even under a higher limit). A repeated id
    /// is remembered until its oldest place is forgotten.
    init(ring ids: [String], head: Int) {
        let start = ids.indices.contains(head) ? head : 0
        ring = (ids[start...] + ids[..<start]).map(RememberedEventId.init)
        rebuildIndex()
    }

    /// The ids, oldest first.
    var inOrder: [RememberedEventId] { Array(ring[head...] + ring[..<head]) }

    var count: Int { ring.count }

    /// Whether `id` is remembered.
    func contains(_ id: RememberedEventId) -> Bool { slot(of: id) != nil }

    /// Remembers `id` (not remembered yet) as the latest, forgetting the oldest if `limit` are remembered already.
    mutating func remember(_ id: RememberedEventId, limit: Int) {
        if ring.count < limit {
            ring.append(id)
            if ring.count * 2 > slots.count {
                rebuildIndex()
            } else {
                place(Int32(ring.count - 1))
            }
        } else {
            let position = head
            forget(position)
            ring[position] = id
            place(Int32(position))
            head = (head + 1) % ring.count
        }
    }

    /// Keeps only the latest `keep` ids.
    mutating func keepLatest(_ keep: Int) {
        guard ring.count > keep else { return }
        let kept = Array(inOrder.suffix(max(0, keep)))
        ring = kept
        head = 0
        rebuildIndex()
    }

    // MARK: - The index

    private var mask: Int { slots.count - 1 }

    private func home(_ id: RememberedEventId) -> Int { id.hash & mask }

    /// The slot that holds `id`'s position, if it is remembered.
    private func slot(of id: RememberedEventId) -> Int? {
        guard !slots.isEmpty else { return nil }
        var index = home(id)
        while true {
            let position = slots[index]
            if position < 0 { return nil }
            if ring[Int(position)] == id { return index }
            index = (index + 1) & mask
        }
    }

    /// Indexes the id at `position` (whose slot is free: not indexed yet, or forgotten).
    private mutating func place(_ position: Int32) {
        var index = home(ring[Int(position)])
        while slots[index] >= 0 { index = (index + 1) & mask }
        slots[index] = position
    }

    /// Removes the id at `position` from the index (if it is the one indexed: a repeated id is indexed once), moving
    /// back the entries after it that its slot had pushed along.
    private mutating func forget(_ position: Int) {
        var index = home(ring[position])
        while slots[index] != Int32(position) {
            if slots[index] < 0 { return }
            index = (index + 1) & mask
        }
        var hole = index
        var next = hole
        while true {
            next = (next + 1) & mask
            let moved = slots[next]
            if moved < 0 { break }
            let wanted = home(ring[Int(moved)])
            // Stays if its home lies cyclically in (hole, next]: the hole is not on its way.
            let stays = hole <= next ? (hole < wanted && wanted <= next) : (hole < wanted || wanted <= next)
            if stays { continue }
            slots[hole] = moved
            hole = next
        }
        slots[hole] = -1
    }

    private mutating func rebuildIndex() {
        var size = 8
        while size < ring.count * 2 { size *= 2 }
        slots = [Int32](repeating: -1, count: size)
        // In order of arrival: of a repeated id, the oldest place is the one indexed (forgetting it forgets the id).
        for offset in ring.indices {
            let position = (head + offset) % ring.count
            if slot(of: ring[position]) == nil { place(Int32(position)) }
        }
    }
}

/// An event id remembered for recognising duplicates, with its hash taken once (`RecentEventIds` finds it by that).
struct RememberedEventId: Sendable, Equatable {
    let id: String
    let hash: Int

    init(_ id: String) {
        self.id = id
        self.hash = id.hashValue
    }

    static func == (a: Self, b: Self) -> Bool { a.hash == b.hash && a.id == b.id }
}

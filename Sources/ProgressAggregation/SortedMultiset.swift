/// A multiset of integers kept in order, in chunks of 128 to 512: inserting, removing, counting up to a bound and
/// finding the k-th smallest cost a binary search, a chunk's worth of moves and a walk over the chunks — a job of
/// 200,000 videos keeps a few hundred chunks, not one array each insertion moves megabytes of, nor one that is sorted
/// again for every question. A chunk that shrinks below a quarter is merged with its neighbour, so no order of
/// insertions and removals can leave the multiset in many small chunks.
struct SortedMultiset: Sendable {
    /// Sorted, none empty, every element of a chunk ≤ every element of the next, and (unless there is only one) none
    /// below `chunkLimit / 4` elements.
    private var chunks: [[Int64]] = []
    /// How many elements it holds (with repeats).
    private(set) var count = 0

    /// A chunk is split in two beyond this many elements.
    private static let chunkLimit = 512

    var isEmpty: Bool { count == 0 }

    /// Adds one occurrence of `value`.
    mutating func insert(_ value: Int64) {
        count += 1
        guard !chunks.isEmpty else {
            chunks = [[value]]
            return
        }
        let c = chunkIndex(for: value)
        chunks[c].insert(value, at: Self.firstIndex(in: chunks[c], after: value))
        splitIfTooLarge(c)
    }

    /// Removes one occurrence of `value`; false if it holds none.
    @discardableResult
    mutating func remove(_ value: Int64) -> Bool {
        guard !chunks.isEmpty else { return false }
        let c = chunkIndex(for: value)
        let i = Self.firstIndex(in: chunks[c], notBelow: value)
        guard i < chunks[c].count, chunks[c][i] == value else { return false }
        chunks[c].remove(at: i)
        count -= 1
        if chunks[c].isEmpty {
            chunks.remove(at: c)
        } else if chunks[c].count < Self.chunkLimit / 4, chunks.count > 1 {
            // Merged into the neighbour (adjacent chunks concatenate in order), split again if that is too large.
            let first = c + 1 < chunks.count ? c : c - 1
            let second = chunks.remove(at: first + 1)
            chunks[first].append(contentsOf: second)
            splitIfTooLarge(first)
        }
        return true
    }

    /// How many chunks hold the elements (for tests of the bound on it).
    var chunkCount: Int { chunks.count }

    private mutating func splitIfTooLarge(_ c: Int) {
        guard chunks[c].count > Self.chunkLimit else { return }
        let half = chunks[c].count / 2
        let upper = Array(chunks[c][half...])
        chunks[c].removeSubrange(half...)
        chunks.insert(upper, at: c + 1)
    }

    /// How many elements are ≤ `value`.
    func count(atMost value: Int64) -> Int {
        var below = 0
        for chunk in chunks {
            guard chunk[chunk.count - 1] <= value else { return below + Self.firstIndex(in: chunk, after: value) }
            below += chunk.count
        }
        return below
    }

    /// The element with `index` elements before it in order (`0 ..< count`).
    func element(at index: Int) -> Int64 {
        precondition(index >= 0 && index < count, "index out of range")
        var rest = index
        for chunk in chunks {
            if rest < chunk.count { return chunk[rest] }
            rest -= chunk.count
        }
        preconditionFailure("count out of step with the chunks")
    }

    /// Every element, in order.
    var elements: [Int64] { chunks.flatMap { $0 } }

    /// The first chunk whose last element is ≥ `value` — where `value` is, or belongs — or else the last chunk.
    private func chunkIndex(for value: Int64) -> Int {
        var low = 0
        var high = chunks.count - 1
        while low < high {
            let middle = low + (high - low) / 2
            if chunks[middle][chunks[middle].count - 1] < value { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// The index of the first element ≥ `value` (or the end).
    private static func firstIndex(in chunk: [Int64], notBelow value: Int64) -> Int { partitionPoint(chunk) { $0 < value } }

    /// The index of the first element > `value` (or the end).
    private static func firstIndex(in chunk: [Int64], after value: Int64) -> Int { partitionPoint(chunk) { $0 <= value } }

    /// The index of the first element for which `comesFirst` is false, in a chunk where it holds for a prefix.
    private static func partitionPoint(_ chunk: [Int64], _ comesFirst: (Int64) -> Bool) -> Int {
        var low = 0
        var high = chunk.count
        while low < high {
            let middle = low + (high - low) / 2
            if comesFirst(chunk[middle]) { low = middle + 1 } else { high = middle }
        }
        return low
    }
}

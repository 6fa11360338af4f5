import ProgressContract

/// What a job's progress needs to know of its videos, kept up to date as each one changes: how many are in each
/// state, when the finished ones last changed (throughput over a window of event time), and the processing times of
/// the completed ones (mean, p50, p95). So computing a job's progress — for every job event, every snapshot and every
/// REST read — costs about the same for a job of ten videos as for one of 200,000, instead of walking and sorting
/// all of them each time.
struct VideoTally: Sendable {
    /// What of one video the tally counts: three plain values.
    struct Entry: Equatable, Sendable {
        var state: VideoState
        var updatedAt: Int64
        var processingMs: Int64?

        init(_ video: VideoProgress) {
            state = video.state
            updatedAt = video.updatedAt
            processingMs = video.processingMs
        }
    }

    /// Videos by state, at each state's place in `VideoState.allCases`: an array, not a dictionary, because the
    /// state's hash is its raw value's (a string hashed for every video event).
    private var counts = [Int](repeating: 0, count: VideoState.allCases.count)
    /// `updatedAt` of every video in a terminal state.
    private(set) var finishedAt = SortedMultiset()
    /// `processingMs` of every completed video that reported one.
    private(set) var processingTimes = SortedMultiset()
    /// Their sum, exactly (up to 200,000 times 2^53 − 1 does not fit 64 bits).
    private(set) var processingTimesSum: Int128 = 0

    init() {}

    /// Videos in `state`.
    func count(_ state: VideoState) -> Int { counts[state.tallyIndex] }

    init(_ videos: some Sequence<VideoProgress>) {
        for video in videos { update(from: nil, to: Entry(video)) }
    }

    /// Counts a video that changed from `old` (nil: it is new) to `new`.
    mutating func update(from old: Entry?, to new: Entry) {
        guard old != new else { return }
        if let old {
            if old.state != new.state { counts[old.state.tallyIndex] -= 1 }
            removeTimes(old)
        }
        if old?.state != new.state { counts[new.state.tallyIndex] += 1 }
        addTimes(new)
    }

    private mutating func addTimes(_ entry: Entry) {
        if entry.state.isTerminal { finishedAt.insert(entry.updatedAt) }
        if entry.state == .completed, let ms = entry.processingMs {
            processingTimes.insert(ms)
            processingTimesSum += Int128(ms)
        }
    }

    private mutating func removeTimes(_ entry: Entry) {
        if entry.state.isTerminal { finishedAt.remove(entry.updatedAt) }
        if entry.state == .completed, let ms = entry.processingMs, processingTimes.remove(ms) {
            processingTimesSum -= Int128(ms)
        }
    }
}

extension VideoState {
    /// The state's place in `allCases`.
    var tallyIndex: Int {
        switch self {
        case .pending: 0
        case .processing: 1
        case .completed: 2
        case .failed: 3
        case .skipped: 4
        case .canceled: 5
        }
    }
}

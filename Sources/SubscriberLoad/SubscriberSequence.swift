/// One connection's view of its job's `seq`s, kept as the README's rule for clients says: after the snapshot its
/// `seq` is the largest seen, and a live message whose `seq` is not larger is dropped (counted as stale).
///
/// A `seq` is the event's input offset + 1, so gaps are normal: other jobs' records in the same partition,
/// conflated `job.progress`, duplicates and dead letters all leave them. Gaps are counted for information; losses
/// are found by comparing connections (``DeliveryAudit``).
struct SubscriberSequence: Sendable, Equatable {
    /// The `seq` of the first `job.snapshot`, `nil` before it.
    private(set) var snapshotSeq: Int64?
    /// The largest `seq` taken (snapshot or live).
    private(set) var lastSeq: Int64 = 0
    /// Live messages whose `seq` skipped past `lastSeq + 1`.
    private(set) var gaps = 0
    /// The `seq`s skipped by those gaps.
    private(set) var skippedSeqs: Int64 = 0
    /// Live messages whose `seq` was not larger than the largest seen (duplicates, reordering).
    private(set) var stale = 0
    /// Live messages that came before the snapshot (the bridge never sends any).
    private(set) var beforeSnapshot = 0
    /// Never-conflated live messages taken after the snapshot.
    private(set) var neverConflated = 0
    /// Terminal events taken after the snapshot (also counted in `neverConflated`).
    private(set) var terminal = 0

    /// What one message did to the sequence.
    enum Observation: Equatable {
        /// The first snapshot: the connection is ready.
        case firstSnapshot
        /// A live message taken in order (possibly after a gap).
        case taken
        /// Anything not taken: a later snapshot, a stale or early live message, a control message.
        case ignored
    }

    /// Takes one message.
    mutating func observe(_ kind: MessageKind, seq: Int64?) -> Observation {
        if kind == .snapshot {
            guard let seq else { return .ignored }
            lastSeq = seq
            if snapshotSeq == nil {
                snapshotSeq = seq
                return .firstSnapshot
            }
            return .ignored
        }
        guard kind.isLive, let seq else { return .ignored }
        guard snapshotSeq != nil else {
            beforeSnapshot += 1
            return .ignored
        }
        guard seq > lastSeq else {
            stale += 1
            return .ignored
        }
        if seq > lastSeq + 1 {
            gaps += 1
            skippedSeqs += seq - lastSeq - 1
        }
        lastSeq = seq
        if kind.isNeverConflated { neverConflated += 1 }
        if kind == .terminal { terminal += 1 }
        return .taken
    }
}

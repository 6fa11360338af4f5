import Testing

@testable import SubscriberLoad

@Suite("SubscriberSequence")
struct SubscriberSequenceTests {
    @Test("gaps, stale and early messages are counted; the snapshot sets the base")
    func counting() {
        var sequence = SubscriberSequence()
        #expect(sequence.observe(.connectionAck, seq: 0) == .ignored)
        #expect(sequence.observe(.conflatable, seq: 5) == .ignored)  // before the snapshot
        #expect(sequence.observe(.snapshot, seq: 10) == .firstSnapshot)
        #expect(sequence.observe(.conflatable, seq: 11) == .taken)
        #expect(sequence.observe(.mustDeliver, seq: 14) == .taken)  // gap of 2
        #expect(sequence.observe(.mustDeliver, seq: 14) == .ignored)  // duplicate
        #expect(sequence.observe(.conflatable, seq: 12) == .ignored)  // reordered
        #expect(sequence.observe(.terminal, seq: 15) == .taken)
        #expect(sequence.observe(.control, seq: 0) == .ignored)
        #expect(sequence.observe(.mustDeliver, seq: nil) == .ignored)
        #expect(sequence.observe(.conflatable, seq: 25) == .taken)  // gap of 9
        #expect(sequence.snapshotSeq == 10)
        #expect(sequence.lastSeq == 25)
        #expect(sequence.gaps == 2)
        #expect(sequence.skippedSeqs == 11)
        #expect(sequence.stale == 2)
        #expect(sequence.beforeSnapshot == 1)
        #expect(sequence.neverConflated == 2)
        #expect(sequence.terminal == 1)
    }

    @Test("a second snapshot moves the largest seq seen but not the base")
    func secondSnapshot() {
        var sequence = SubscriberSequence()
        _ = sequence.observe(.snapshot, seq: 3)
        #expect(sequence.observe(.snapshot, seq: 8) == .ignored)
        #expect(sequence.snapshotSeq == 3)
        #expect(sequence.observe(.mustDeliver, seq: 8) == .ignored)
        #expect(sequence.observe(.mustDeliver, seq: 9) == .taken)
        #expect(sequence.gaps == 0)
    }
}

@Suite("DeliveryAudit")
struct DeliveryAuditTests {
    typealias Connection = DeliveryAudit.Connection

    @Test("counting seqs in a half-open range")
    func rangeCount() {
        let seqs: [Int64] = [2, 4, 6, 8]
        #expect(DeliveryAudit.count(of: seqs, after: 0, upTo: 10) == 4)
        #expect(DeliveryAudit.count(of: seqs, after: 2, upTo: 8) == 3)
        #expect(DeliveryAudit.count(of: seqs, after: 3, upTo: 7) == 2)
        #expect(DeliveryAudit.count(of: seqs, after: 8, upTo: 20) == 0)
        #expect(DeliveryAudit.count(of: seqs, after: 6, upTo: 6) == 0)
        #expect(DeliveryAudit.count(of: [], after: 0, upTo: 6) == 0)
    }

    @Test("lossless connections that subscribed at different points miss nothing")
    func lossless() {
        // Never-conflated seqs 11, 13, 20 (terminal); progress in between does not matter.
        let job = DeliveryAudit.Job(neverConflatedSeqs: [11, 13, 20], terminalSeqs: [20], endSeq: 20)
        let audit = DeliveryAudit(
            connections: [
                Connection(job: 0, snapshotSeq: 10, lastSeq: 20, neverConflated: 3, terminal: 1, open: true),
                Connection(job: 0, snapshotSeq: 12, lastSeq: 20, neverConflated: 2, terminal: 1, open: true),
                Connection(job: 0, snapshotSeq: 20, lastSeq: 20, neverConflated: 0, terminal: 0, open: true),
            ], jobs: [job])
        #expect(audit.connections == 3)
        #expect(audit.neverConflatedMissing == 0)
        #expect(audit.terminalMissing == 0)
        #expect(audit.neverConflatedReceived == 5)
        #expect(audit.terminalReceived == 2)
        #expect(audit.connectionsWithLosses == 0)
    }

    @Test("a message one connection lacks, and a terminal event it never got, are missing")
    func losses() {
        let job = DeliveryAudit.Job(neverConflatedSeqs: [11, 13, 20], terminalSeqs: [20], endSeq: 20)
        let audit = DeliveryAudit(
            connections: [
                Connection(job: 0, snapshotSeq: 10, lastSeq: 20, neverConflated: 3, terminal: 1, open: true),
                Connection(job: 0, snapshotSeq: 10, lastSeq: 20, neverConflated: 2, terminal: 1, open: true),  // lost 11 or 13
                Connection(job: 0, snapshotSeq: 10, lastSeq: 13, neverConflated: 2, terminal: 0, open: true),  // stuck before 20
            ], jobs: [job])
        #expect(audit.neverConflatedMissing == 2)
        #expect(audit.terminalMissing == 1)
        #expect(audit.connectionsWithLosses == 2)
    }

    @Test("closed connections and other jobs are not held against a connection")
    func closedAndOtherJobs() {
        let jobs = [
            DeliveryAudit.Job(neverConflatedSeqs: [5, 6], terminalSeqs: [], endSeq: 6),
            DeliveryAudit.Job(neverConflatedSeqs: [100], terminalSeqs: [100], endSeq: 100),
        ]
        let audit = DeliveryAudit(
            connections: [
                Connection(job: 0, snapshotSeq: 1, lastSeq: 5, neverConflated: 1, terminal: 0, open: false),  // closed by the bridge
                Connection(job: 0, snapshotSeq: 1, lastSeq: 6, neverConflated: 2, terminal: 0, open: true),
                Connection(job: 1, snapshotSeq: 99, lastSeq: 100, neverConflated: 1, terminal: 1, open: true),
                Connection(job: 7, snapshotSeq: 0, lastSeq: 0, neverConflated: 0, terminal: 0, open: true),  // unknown job
            ], jobs: jobs)
        #expect(audit.connections == 2)
        #expect(audit.neverConflatedMissing == 0)
    }

    @Test("a connection ahead of the window's end is judged up to its own last seq")
    func aheadOfWindowEnd() {
        let job = DeliveryAudit.Job(neverConflatedSeqs: [3, 7, 9], terminalSeqs: [], endSeq: 7)
        let audit = DeliveryAudit(
            connections: [
                Connection(job: 0, snapshotSeq: 1, lastSeq: 9, neverConflated: 3, terminal: 0, open: true),
                Connection(job: 0, snapshotSeq: 1, lastSeq: 7, neverConflated: 2, terminal: 0, open: true),
            ], jobs: [job])
        #expect(audit.neverConflatedMissing == 0)
    }
}

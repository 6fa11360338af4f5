import DequeModule
import Synchronization

/// Hands batches from ingest's reading stage (poll, parse, validate) to its applying stage, up to `capacity` of them
/// (and `byteCapacity` bytes of them) ahead: the reader goes on while the applier is busy — each stage on a core of its own — and waits only when it
/// is that far ahead. (Handing over one batch at a time made each stage wait for the slower of the two at every
/// batch: measured, a fifth of ingest's throughput.)
///
/// One sender and one receiver. Either side may `close` it: the sender's waiting `send` then returns false, and
/// `receive` returns what was handed over before, then `nil`.
final class BatchHandoff<Batch: Sendable>: Sendable {
    private struct State {
        var batches = Deque<(batch: Batch, bytes: Int)>()
        /// The bytes of the batches waiting.
        var bytes = 0
        var closed = false
        var receiver: CheckedContinuation<Batch?, Never>?
        var sender: CheckedContinuation<Bool, Never>?
    }

    private enum SendStep {
        case closed, queued, full
        case deliver(CheckedContinuation<Batch?, Never>)
    }

    private enum ReceiveStep {
        case batch(Batch, waitingSender: CheckedContinuation<Bool, Never>?)
        case closed, empty
    }

    private let state = Mutex(State())
    /// The most batches handed over and not yet received.
    let capacity: Int
    /// No batch is handed over while this many bytes wait (one always is into an empty handoff).
    let byteCapacity: Int
    /// A batch's bytes, as this handoff counts them.
    private let bytesOf: @Sendable (Batch) -> Int

    init(capacity: Int, byteCapacity: Int = .max, bytesOf: @escaping @Sendable (Batch) -> Int = { _ in 0 }) {
        precondition(capacity >= 1)
        self.capacity = capacity
        self.byteCapacity = byteCapacity
        self.bytesOf = bytesOf
    }

    /// Whether a batch can be handed over at once.
    private func hasRoom(_ s: State) -> Bool {
        s.receiver != nil || s.batches.isEmpty || (s.batches.count < capacity && s.bytes < byteCapacity)
    }

    /// Waits until a batch can be handed over at once (fewer than `capacity` and than `byteCapacity` bytes wait), so
    /// that the sender reads its next batch only then: besides the one received, at most `capacity` batches are held,
    /// and more than `byteCapacity` bytes only by a single batch. Returns false once closed.
    func waitForRoom() async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let now = state.withLock { s -> Bool? in
                if s.closed { return false }
                if hasRoom(s) { return true }
                s.sender = continuation
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    /// Hands `batch` over, waiting while there is no room. Returns false, dropping the batch, once
    /// the handoff is closed.
    func send(_ batch: consuming Batch) async -> Bool {
        // Moved along, never copied: a second reference to a batch's records, released by this side only after the
        // receiver began to take them apart, made the receiver copy them all.
        var held: Batch? = batch
        let bytes = bytesOf(held!)
        while true {
            let step = state.withLock { s -> SendStep in
                if s.closed { return .closed }
                if let receiver = s.receiver {
                    s.receiver = nil
                    return .deliver(receiver)
                }
                guard hasRoom(s) else { return .full }
                s.batches.append((held.take()!, bytes))
                s.bytes += bytes
                return .queued
            }
            switch step {
            case .closed: return false
            case .queued: return true
            case .deliver(let receiver):
                receiver.resume(returning: held.take()!)
                return true
            case .full:
                guard await waitForRoom() else { return false }
            }
        }
    }

    /// The next batch, waiting for one; `nil` once the handoff is closed and every batch handed over was received.
    func receive() async -> Batch? {
        func take(_ s: inout State) -> ReceiveStep {
            if let first = s.batches.popFirst() {
                s.bytes -= first.bytes
                defer { s.sender = nil }
                return .batch(first.batch, waitingSender: s.sender)
            }
            return s.closed ? .closed : .empty
        }
        switch state.withLock({ take(&$0) }) {
        case .batch(let batch, let sender):
            sender?.resume(returning: true)
            return batch
        case .closed:
            return nil
        case .empty:
            return await withCheckedContinuation { (continuation: CheckedContinuation<Batch?, Never>) in
                let step = state.withLock { s -> ReceiveStep in
                    let step = take(&s)
                    if case .empty = step { s.receiver = continuation }
                    return step
                }
                switch step {
                case .batch(let batch, let sender):
                    sender?.resume(returning: true)
                    continuation.resume(returning: batch)
                case .closed: continuation.resume(returning: nil)
                case .empty: break
                }
            }
        }
    }

    /// Closes the handoff: a waiting sender is told so, a waiting receiver gets `nil`.
    func close() {
        let (receiver, sender) = state.withLock { s in
            s.closed = true
            defer {
                s.receiver = nil
                s.sender = nil
            }
            return (s.receiver, s.sender)
        }
        receiver?.resume(returning: nil)
        sender?.resume(returning: false)
    }
}

import DequeModule
import Synchronization

/// Hands batches from ingest's reading stage (poll, parse, validate) to its applying stage, up to `capacity` of them
/// ahead: the reader goes on while the applier is busy — each stage on a core of its own — and waits only when it
/// is that far ahead. (Handing over one batch at a time made each stage wait for the slower of the two at every
/// batch: measured, a fifth of ingest's throughput.)
///
/// One sender and one receiver. Either side may `close` it: the sender's waiting `send` then returns false, and
/// `receive` returns what was handed over before, then `nil`.
final class BatchHandoff<Batch: Sendable>: Sendable {
    private struct State {
        var batches = Deque<Batch>()
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

    init(capacity: Int) {
        precondition(capacity >= 1)
        self.capacity = capacity
    }

    /// Hands `batch` over, waiting while `capacity` batches wait already. Returns false, dropping the batch, once
    /// the handoff is closed.
    func send(_ batch: consuming Batch) async -> Bool {
        // Moved along, never copied: a second reference to a batch's records, released by this side only after the
        // receiver began to take them apart, made the receiver copy them all.
        var held: Batch? = batch
        while true {
            let step = state.withLock { s -> SendStep in
                if s.closed { return .closed }
                if let receiver = s.receiver {
                    s.receiver = nil
                    return .deliver(receiver)
                }
                guard s.batches.count < capacity else { return .full }
                s.batches.append(held.take()!)
                return .queued
            }
            switch step {
            case .closed: return false
            case .queued: return true
            case .deliver(let receiver):
                receiver.resume(returning: held.take()!)
                return true
            case .full:
                let open = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                    let now = state.withLock { s -> Bool? in
                        if s.closed { return false }
                        if s.batches.count < capacity || s.receiver != nil { return true }  // room made meanwhile
                        s.sender = continuation
                        return nil
                    }
                    if let now { continuation.resume(returning: now) }
                }
                if !open { return false }
            }
        }
    }

    /// The next batch, waiting for one; `nil` once the handoff is closed and every batch handed over was received.
    func receive() async -> Batch? {
        func take(_ s: inout State) -> ReceiveStep {
            if let batch = s.batches.popFirst() {
                defer { s.sender = nil }
                return .batch(batch, waitingSender: s.sender)
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

import Synchronization
import Testing

@testable import ProgressBridge

/// The handoff between ingest's reading and applying stages: in order, bounded, and either side can stop the other.
@Suite("Batch handoff")
struct BatchHandoffTests {
    @Test func batchesArriveInOrderAndTheSenderWaitsWhenItIsCapacityAhead() async {
        let handoff = BatchHandoff<Int>(capacity: 2)
        #expect(await handoff.send(1))
        #expect(await handoff.send(2))
        // A third waits until the receiver takes one.
        await withTaskGroup(of: Void.self) { group in
            let sent = Flag()
            group.addTask {
                #expect(await handoff.send(3))
                sent.set()
            }
            try? await Task.sleep(for: .milliseconds(100))
            #expect(!sent.isSet, "the sender went more than its capacity ahead")
            #expect(await handoff.receive() == 1)
            await group.waitForAll()
            #expect(sent.isSet)
        }
        #expect(await handoff.receive() == 2)
        #expect(await handoff.receive() == 3)
    }

    @Test func aWaitingReceiverGetsTheNextBatchDirectly() async {
        let handoff = BatchHandoff<Int>(capacity: 1)
        async let received = handoff.receive()
        try? await Task.sleep(for: .milliseconds(50))
        #expect(await handoff.send(7))
        #expect(await received == 7)
    }

    @Test func closingReleasesAWaitingSenderAndTheReceiverDrainsWhatWasHandedOver() async {
        let handoff = BatchHandoff<Int>(capacity: 1)
        #expect(await handoff.send(1))
        async let blocked = handoff.send(2)
        try? await Task.sleep(for: .milliseconds(50))
        handoff.close()
        #expect(await blocked == false)
        #expect(await handoff.send(3) == false)
        #expect(await handoff.receive() == 1)
        #expect(await handoff.receive() == nil)
    }

    @Test func closingReleasesAWaitingReceiver() async {
        let handoff = BatchHandoff<Int>(capacity: 4)
        async let received = handoff.receive()
        try? await Task.sleep(for: .milliseconds(50))
        handoff.close()
        #expect(await received == nil)
    }

    @Test func manyBatchesThroughASmallHandoffKeepTheirOrder() async {
        let handoff = BatchHandoff<Int>(capacity: 2)
        let count = 1_000
        let received = await withTaskGroup(of: [Int].self) { group in
            group.addTask {
                for i in 0..<count { guard await handoff.send(i) else { break } }
                handoff.close()
                return []
            }
            group.addTask {
                var all: [Int] = []
                while let next = await handoff.receive() { all.append(next) }
                return all
            }
            var all: [Int] = []
            for await part in group { all += part }
            return all
        }
        #expect(received == Array(0..<count))
    }
}

/// Expects `handoff` to have no room until `expected` is received from it, and room then.
private func expectNoRoom(in handoff: BatchHandoff<Int>, untilReceiving expected: Int, _ why: Comment) async {
    await withTaskGroup(of: Void.self) { group in
        let roomMade = Flag()
        group.addTask {
            #expect(await handoff.waitForRoom())
            roomMade.set()
        }
        try? await Task.sleep(for: .milliseconds(100))
        #expect(!roomMade.isSet, why)
        #expect(await handoff.receive() == expected)
        await group.waitForAll()
        #expect(roomMade.isSet)
    }
}

/// A flag one task sets and another reads.
private final class Flag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}

extension BatchHandoffTests {
    @Test func waitingForRoomHoldsTheSenderUntilABatchIsReceivedOrTheHandoffCloses() async {
        let handoff = BatchHandoff<Int>(capacity: 1)
        #expect(await handoff.waitForRoom())
        #expect(await handoff.send(1))
        await expectNoRoom(in: handoff, untilReceiving: 1, "room while the one batch the handoff holds is not received")
        #expect(await handoff.send(2))
        async let waiting = handoff.waitForRoom()
        try? await Task.sleep(for: .milliseconds(50))
        handoff.close()
        #expect(await waiting == false)
    }
}

extension BatchHandoffTests {
    @Test func theBytesWaitingAreBoundedTooAndOneBatchAlwaysGoesIntoAnEmptyHandoff() async {
        // Batches are their own size in bytes.
        let handoff = BatchHandoff<Int>(capacity: 10, byteCapacity: 100, bytesOf: { $0 })
        #expect(await handoff.waitForRoom())
        #expect(await handoff.send(500))  // larger than the bound, into an empty handoff
        await expectNoRoom(in: handoff, untilReceiving: 500, "room while 500 bytes wait against a bound of 100")
        #expect(await handoff.send(60))
        #expect(await handoff.waitForRoom())  // 60 < 100
        #expect(await handoff.send(60))
        async let third = handoff.waitForRoom()  // 120 wait: no room
        try? await Task.sleep(for: .milliseconds(50))
        #expect(await handoff.receive() == 60)
        #expect(await third)
        handoff.close()
    }
}

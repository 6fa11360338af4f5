import ProgressContract

/// Orders events of one job by event time, then the monitor's `seq`, then `event_id`, so
/// "latest wins" gives the same answer whatever order the events arrive in.
public struct EventStamp: Sendable, Hashable, Comparable {
    public let occurredAt: Int64
    public let seq: Int64
    public let eventId: String

    public init(_ event: ProgressEvent) {
        self.init(occurredAt: event.occurredAt, seq: event.seq ?? -1, eventId: event.eventId)
    }

    init(occurredAt: Int64, seq: Int64, eventId: String) {
        self.occurredAt = occurredAt
        self.seq = seq
        self.eventId = eventId
    }

    public static func < (a: EventStamp, b: EventStamp) -> Bool {
        if a.occurredAt != b.occurredAt { return a.occurredAt < b.occurredAt }
        if a.seq != b.seq { return a.seq < b.seq }
        return a.eventId < b.eventId
    }
}

extension EventStamp: Codable {
    // Compact, because every video record of the state topic carries a few: [occurred_at, seq, event_id].
    public init(from decoder: any Decoder) throws {
        var c = try decoder.unkeyedContainer()
        self.init(occurredAt: try c.decode(Int64.self), seq: try c.decode(Int64.self), eventId: try c.decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.unkeyedContainer()
        try c.encode(occurredAt)
        try c.encode(seq)
        try c.encode(eventId)
    }
}

/// One field's value and the stamp of the event that set it. The latest event that carries a value
/// wins, whatever order events arrive in — each field on its own, so an event that leaves a field out
/// cannot hide an older value of it, nor can an older value overwrite a newer one.
struct Stamped<Value: Sendable & Hashable>: Sendable, Hashable {
    private(set) var value: Value?
    private(set) var stamp: EventStamp?

    init() {}

    init(value: Value?, stamp: EventStamp?) {
        self.value = value
        self.stamp = value == nil ? nil : stamp
    }

    /// Takes `incoming` if it is a value and its event is later than the one that set the current value.
    /// Returns whether it did.
    @discardableResult
    mutating func offer(_ incoming: Value?, _ at: EventStamp) -> Bool {
        guard let incoming else { return false }
        if let stamp, !(stamp < at) { return false }
        value = incoming
        stamp = at
        return true
    }
}

extension Stamped: Codable where Value: Codable {}

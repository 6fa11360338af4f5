import ProgressContract

/// Orders events of one job by event time, then the monitor's `seq`, then `event_id`, so
/// "latest wins" gives the same answer whatever order the events arrive in.
public struct EventStamp: Sendable, Hashable, Comparable, Codable {
    public let occurredAt: Int64
    public let seq: Int64
    public let eventId: String

    public init(_ event: ProgressEvent) {
        self.occurredAt = event.occurredAt
        self.seq = event.seq ?? -1
        self.eventId = event.eventId
    }

    public static func < (a: EventStamp, b: EventStamp) -> Bool {
        if a.occurredAt != b.occurredAt { return a.occurredAt < b.occurredAt }
        if a.seq != b.seq { return a.seq < b.seq }
        return a.eventId < b.eventId
    }
}

import ProgressContract

/// A job's state change at stream time `ms` (its event id names job, state and time, so each is distinct).
func stateChange(_ jobId: String, to state: JobState, at ms: Int64) -> ProgressEvent {
    ProgressEvent(
        eventId: "\(jobId)-\(state.rawValue)-\(ms)", type: .jobStateChanged, jobId: jobId, occurredAt: ms, seq: nil,
        payload: .jobStateChanged(from: nil, to: state, reason: nil, job: nil))
}

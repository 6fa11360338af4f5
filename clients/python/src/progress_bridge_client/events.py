"""Progress events with the contract's fields: schema_version, event_id, type, job_id, occurred_at, seq, data."""
import datetime
import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_event_id():
    """A ULID: 48 bits of milliseconds and 80 random bits, Crockford base 32 (sorts by time)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def timestamp(moment=None):
    """RFC 3339 in UTC with milliseconds: 2026-11-24T10:15:30.123Z."""
    if moment is None:
        moment = datetime.datetime.now(datetime.timezone.utc)
    if isinstance(moment, (int, float)):
        moment = datetime.datetime.fromtimestamp(moment, datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventBuilder:
    """Builds one job's events, numbering them with a per-job `seq` (1, 2, …; thread-safe). Every method returns the
    event as a dict; `ProgressPublisher.publish` validates and sends it."""

    def __init__(self, job_id, first_seq=1):
        self.job_id = job_id
        self._seq = first_seq - 1
        self._lock = threading.Lock()

    def event(self, type_, data, occurred_at=None, event_id=None, seq=None):
        """Any event type with its `data`."""
        with self._lock:
            if seq is None:
                self._seq += 1
                seq = self._seq
        return {"schema_version": 1, "event_id": event_id or new_event_id(), "type": type_, "job_id": self.job_id,
                "occurred_at": occurred_at or timestamp(), "seq": seq, "data": data}

    def state_changed(self, to, from_=None, reason=None, job=None, **kw):
        data = {"from": from_, "to": to}
        if reason is not None:
            data["reason"] = reason
        if job is not None:
            data["job"] = job
        return self.event("job.state_changed", data, **kw)

    def progress(self, total_videos, completed, failed=0, processing=None, percent_complete=None, **kw):
        data = {"total_videos": total_videos, "completed": completed, "failed": failed}
        if processing is not None:
            data["processing"] = processing
        if percent_complete is not None:
            data["percent_complete"] = percent_complete
        return self.event("job.progress", data, **kw)

    def video_created(self, video_id, row_index=None, title=None, **kw):
        data = {"video_id": video_id}
        if row_index is not None:
            data["row_index"] = row_index
        if title is not None:
            data["title"] = title
        return self.event("video.created", data, **kw)

    def video_updated(self, video_id, state, progress_percent=None, stage=None, attempt=None, **kw):
        data = {"video_id": video_id, "state": state}
        for key, value in (("progress_percent", progress_percent), ("stage", stage), ("attempt", attempt)):
            if value is not None:
                data[key] = value
        return self.event("video.updated", data, **kw)

    def video_completed(self, video_id, processing_ms, attempt=None, output_url=None, **kw):
        data = {"video_id": video_id, "processing_ms": processing_ms}
        if attempt is not None:
            data["attempt"] = attempt
        if output_url is not None:
            data["output_url"] = output_url
        return self.event("video.completed", data, **kw)

    def video_failed(self, video_id, code, message, retryable=False, attempt=None, processing_ms=None, **kw):
        data = {"video_id": video_id, "error": {"code": code, "message": message}, "retryable": retryable}
        if attempt is not None:
            data["attempt"] = attempt
        if processing_ms is not None:
            data["processing_ms"] = processing_ms
        return self.event("video.failed", data, **kw)

    def completed(self, summary, **kw):
        return self.event("job.completed", {"summary": summary}, **kw)

    def failed(self, code, message, **kw):
        return self.event("job.failed", {"error": {"code": code, "message": message}}, **kw)

    def canceled(self, reason=None, canceled_by=None, **kw):
        data = {}
        if reason is not None:
            data["reason"] = reason
        if canceled_by is not None:
            data["canceled_by"] = canceled_by
        return self.event("job.canceled", data, **kw)

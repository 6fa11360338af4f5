"""The test monitor: publishes events as the Python progress monitor does, with the repository's client
(clients/python: key = job_id, events built with the contract's fields). `send` publishes as given — the tests
also send what the contract refuses; `publish` validates first, as a monitor would."""
import datetime
import itertools

from progress_bridge_client import EventBuilder, ProgressPublisher

_counter = itertools.count(1)


def timestamp(offset_ms: int = 0) -> str:
    base = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.timezone.utc)
    moment = base + datetime.timedelta(milliseconds=offset_ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(job_id: str, type_: str, data: dict, at_ms: int, event_id: str | None = None, seq: int | None = None) -> dict:
    """An event at a fixed moment of test time (2026-11-24T10:00Z + at_ms), built by the client."""
    return EventBuilder(job_id).event(type_, data, occurred_at=timestamp(at_ms), event_id=event_id,
                                      seq=seq if seq is not None else next(_counter))


class Monitor:
    def __init__(self, bootstrap: str, topic: str = "progress.events"):
        # Plain (not idempotent) delivery, as before: the fault tests count on the producer's own retries only.
        self.publisher = ProgressPublisher(bootstrap, topic=topic, config={"linger.ms": 1, "enable.idempotence": False})
        self.producer = self.publisher.producer
        self.topic = topic

    def send(self, key: str, value, headers=None, partition=None):
        """Publishes `value` (a dict as JSON, or bytes/str as they are) without validation."""
        import json
        payload = value if isinstance(value, (bytes, str)) else json.dumps(value)
        self.publisher.publish_raw(key, payload, headers=headers, partition=partition)

    def publish(self, event: dict, traceparent=None):
        """Validates and publishes, as a monitor does (raises InvalidEvent for what the contract refuses)."""
        return self.publisher.publish(event, traceparent=traceparent)

    def flush(self):
        remaining = self.producer.flush(15)
        assert remaining == 0, f"{remaining} events not delivered"


def a_job(job_id: str, videos: int = 5, fail: set[int] = frozenset(), start_ms: int = 0) -> list[dict]:
    """A whole job: created, running, videos processed (some failing), progress, completed."""
    events = [
        event(job_id, "job.state_changed", {"from": None, "to": "pending", "job": {
            "title": "E2E job", "total_videos": videos, "processing_deadline_ms": 3_600_000,
            "created_at": timestamp(start_ms), "priority": "high",
            "sheet_source": {"sheet_id": "1A2B", "range": "A1:Z10"}}}, start_ms),
        event(job_id, "job.state_changed", {"from": "pending", "to": "running"}, start_ms + 1),
    ]
    for i in range(1, videos + 1):
        vid = f"vid_{i:03d}"
        t = start_ms + i * 10_000
        events.append(event(job_id, "video.created", {"video_id": vid, "row_index": i + 1, "title": f"Video {i}"}, start_ms + 2))
        events.append(event(job_id, "video.updated", {"video_id": vid, "state": "processing", "progress_percent": 50, "stage": "render", "attempt": 1}, t - 5_000))
        if i in fail:
            events.append(event(job_id, "video.failed", {"video_id": vid, "error": {"code": "RENDER", "message": "renderer crashed"}, "retryable": False, "attempt": 1}, t))
        else:
            events.append(event(job_id, "video.completed", {"video_id": vid, "processing_ms": 1000 * i, "attempt": 1, "output_url": f"s3://out/{vid}.mp4"}, t))
    end = start_ms + (videos + 1) * 10_000
    done = videos - len(fail)
    events.append(event(job_id, "job.progress", {"total_videos": videos, "completed": done, "failed": len(fail), "percent_complete": 100}, end))
    events.append(event(job_id, "job.state_changed", {"from": "running", "to": "completing"}, end + 1))
    events.append(event(job_id, "job.completed", {"summary": {"total_videos": videos, "completed": done, "failed": len(fail), "skipped": 0, "duration_ms": end}}, end + 2))
    return events

"""The client without Kafka: events as the contract defines them, validation that refuses what the bridge would
dead-letter, trace context as the bridge accepts it."""
import re

import pytest

from progress_bridge_client import Contract, EventBuilder, InvalidEvent, new_event_id, new_traceparent, parse_traceparent, timestamp

CONTRACT = Contract()


def test_every_builder_method_makes_a_valid_event_numbered_per_job():
    job = EventBuilder("job_client_1")
    events = [
        job.state_changed("pending", job={"title": "T", "total_videos": 2}),
        job.state_changed("running", from_="pending"),
        job.video_created("vid_1", row_index=2, title="One"),
        job.video_updated("vid_1", "processing", progress_percent=40, stage="render", attempt=1),
        job.video_completed("vid_1", processing_ms=1200, attempt=1, output_url="s3://out/vid_1.mp4"),
        job.video_failed("vid_2", "RENDER", "crashed", retryable=True, attempt=1),
        job.progress(total_videos=2, completed=1, failed=1, processing=0, percent_complete=100),
        job.completed({"total_videos": 2, "completed": 1, "failed": 1, "skipped": 0, "duration_ms": 5000}),
        EventBuilder("job_client_2").failed("OOM", "out of memory"),
        EventBuilder("job_client_3").canceled(reason="operator", canceled_by="alice"),
    ]
    for event in events:
        CONTRACT.check_event(event)
    assert [e["seq"] for e in events[:8]] == list(range(1, 9))
    assert len({e["event_id"] for e in events}) == len(events)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["occurred_at"]) for e in events)


@pytest.mark.parametrize("mutate, path", [
    (lambda e: e.update(schema_version=2), "/schema_version"),
    (lambda e: e.update(job_id="not a job"), "/job_id"),
    (lambda e: e["data"].update(processing_ms=-1), "/data/processing_ms"),
    (lambda e: e["data"].update(processing_ms=2 ** 53), "/data/processing_ms"),
    (lambda e: e.pop("occurred_at"), ""),
])
def test_what_the_contract_refuses_is_refused_with_its_place(mutate, path):
    event = EventBuilder("job_client_bad").video_completed("vid_1", processing_ms=10)
    mutate(event)
    with pytest.raises(InvalidEvent) as refused:
        CONTRACT.check_event(event)
    assert any(p == path for p, _ in refused.value.errors), refused.value.errors


def test_ids_times_and_traces():
    ids = [new_event_id() for _ in range(200)]
    assert len(set(ids)) == 200 and all(re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", i) for i in ids)
    assert timestamp(0) == "1970-01-01T00:00:00.000Z"
    trace = new_traceparent()
    assert parse_traceparent(trace) == trace and parse_traceparent(trace.encode()) == trace
    for bad in ["", trace + "\n", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", b"\xff" * 55, None, 7]:
        assert parse_traceparent(bad) is None

"""Trace context end to end: an event's traceparent (Kafka header) reaches the bridge's log lines for it and the
WebSocket message it causes; a command carries the request's traceparent (or a new one) to the command topic."""
import asyncio
import json
import re
import uuid

import websockets

from conftest import Bridge, job_state, receive_until, wait_for
from monitor import Monitor, a_job, event
from test_commands import CommandTopic, post

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
WELL_FORMED = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def test_an_events_traceparent_reaches_the_log_and_the_subscribers_message():
    b = Bridge("--no-demo-monitor", "--insecure-no-auth", "--log-level", "debug").wait_ready().wait_owning(4)
    try:
        job = "job_trace_" + uuid.uuid4().hex[:6]
        monitor = Monitor(b.bootstrap)

        async def scenario():
            async with websockets.connect(f"{b.ws_url}/?job_id={job}&token=t") as ws:
                await receive_until(ws, lambda m: m["type"] == "job.snapshot")
                events = a_job(job, videos=1)
                monitor.send(job, events[0], headers=[("traceparent", TRACE.encode())])
                monitor.send(job, events[1], headers=[("traceparent", b"00-not-a-trace")])
                monitor.send(job, event(job, "video.created", {"video_id": "v1"}, 5), headers=[("traceparent", TRACE.encode())])
                monitor.send(job, b"{broken", headers=[("traceparent", TRACE.encode())])
                monitor.flush()
                return await receive_until(ws, lambda m: m["type"] == "video.created")

        messages = asyncio.run(scenario())
        live = [m for m in messages if m["seq"] > 0 and m["type"] != "job.snapshot"]
        assert [m.get("traceparent") for m in live] == [TRACE, None, TRACE], "a malformed traceparent is dropped, never echoed"
        assert wait_for(lambda: sum(TRACE in line and "event rejected" in line for line in b.lines) == 1, timeout=10), \
            "the dead-lettered event's log line names its trace"
        applied = [json.loads(line) for line in b.lines if '"event applied"' in line and TRACE in line]
        assert len(applied) == 2 and all(entry["traceparent"] == TRACE for entry in applied)
        assert not any("00-not-a-trace" in line for line in b.lines)
    finally:
        assert b.stop()[0] == 0


def test_a_command_carries_the_requests_traceparent_or_a_new_one(bridge):
    job = "job_tracecmd_" + uuid.uuid4().hex[:6]
    monitor = Monitor(bridge.bootstrap)
    for e in a_job(job, videos=2)[:2]:
        monitor.send(job, e)
    monitor.flush()
    assert wait_for(lambda: (job_state(bridge, job) or {}).get("state") == "running", timeout=15)
    topic = CommandTopic(bridge.bootstrap)
    try:
        status, _, headers = post(f"{bridge.http_url}/api/v1/bulk-jobs/{job}/pause", None, {"traceparent": TRACE})
        assert status == 202 and headers["traceparent"] == TRACE
        status, _, headers = post(f"{bridge.http_url}/api/v1/bulk-jobs/{job}/cancel", None, {"traceparent": "garbage"})
        assert status == 202 and WELL_FORMED.match(headers["traceparent"]) and headers["traceparent"] != TRACE
        started = headers["traceparent"]
        records = []
        for _ in range(75):
            message = topic.consumer.poll(0.2)
            if message is not None and not message.error() and message.key().decode() == job:
                records.append(dict(message.headers() or []))
            if len(records) == 2:
                break
        assert [r.get("traceparent", b"").decode() for r in records] == [TRACE, started]
    finally:
        topic.close()

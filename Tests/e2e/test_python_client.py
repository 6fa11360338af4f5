"""The Python client (clients/python) against the mock cluster and the built bridge: what it publishes is what the
bridge aggregates, what the contract refuses never leaves it, and the commands the bridge relays come out of its
iterator once each."""
import asyncio
import json
import uuid

import pytest
import websockets
from confluent_kafka import Producer
from progress_bridge_client import CommandConsumer, EventBuilder, InvalidEvent, ProgressPublisher

from conftest import job_state, metric, receive_until, wait_for
from test_commands import post


def test_a_job_published_with_the_client_is_aggregated_and_traced(bridge):
    job_id = "job_client_" + uuid.uuid4().hex[:6]
    publisher = ProgressPublisher(bootstrap_servers=bridge.bootstrap)
    job = EventBuilder(job_id)
    rejected_before = metric(bridge, "progress_bridge_events_invalid_total")

    async def scenario():
        async with websockets.connect(f"{bridge.ws_url}/?job_id={job_id}&token=t") as ws:
            await receive_until(ws, lambda m: m["type"] == "job.snapshot")
            traces = [publisher.publish(job.state_changed("pending", job={"title": "Client job", "total_videos": 3})),
                      publisher.publish(job.state_changed("running", from_="pending"), traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
            for n in (1, 2, 3):
                publisher.publish(job.video_created(f"vid_{n}", row_index=n + 1))
                if n == 2:
                    publisher.publish(job.video_failed(f"vid_{n}", "RENDER", "renderer crashed", attempt=1))
                else:
                    publisher.publish(job.video_completed(f"vid_{n}", processing_ms=1000 * n, attempt=1))
            with pytest.raises(InvalidEvent):
                publisher.publish(job.video_completed("vid_9", processing_ms=-5))  # never sent
            publisher.publish(job.completed({"total_videos": 3, "completed": 2, "failed": 1, "skipped": 0, "duration_ms": 9000}))
            assert publisher.flush() == 0 and publisher.failures == []
            return traces, await receive_until(ws, lambda m: m["type"] == "job.completed")

    traces, messages = asyncio.run(scenario())
    final = job_state(bridge, job_id)
    assert (final["state"], final["completed"], final["failed"], final["total_videos"]) == ("completed", 2, 1, 3)
    assert "vid_9" not in json.dumps(messages)
    assert metric(bridge, "progress_bridge_events_invalid_total") == rejected_before, "nothing invalid reached Kafka"
    by_type = {m["type"]: m for m in messages if m["seq"] > 0}
    assert traces[1] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert by_type["job.state_changed"]["traceparent"] in traces, "the client's traceparent reaches the subscriber"


def test_the_command_iterator_yields_each_relayed_command_once(bridge):
    job_id = "job_cmdclient_" + uuid.uuid4().hex[:6]
    publisher = ProgressPublisher(bootstrap_servers=bridge.bootstrap)
    job = EventBuilder(job_id)
    publisher.publish(job.state_changed("pending"))
    publisher.publish(job.state_changed("running", from_="pending"))
    publisher.flush()
    assert wait_for(lambda: (job_state(bridge, job_id) or {}).get("state") == "running", timeout=15)
    consumer = CommandConsumer(bridge.bootstrap, group_id="monitor-" + uuid.uuid4().hex[:6],
                               config={"fetch.wait.max.ms": 10}, poll_timeout=0.2)
    try:
        status, accepted, headers = post(f"{bridge.http_url}/api/v1/bulk-jobs/{job_id}/pause", {"reason": "quota"})
        assert status == 202
        # The same command published again (a retry through another replica) and a record the contract refuses.
        raw = Producer({"bootstrap.servers": bridge.bootstrap})
        commands = []
        deadline = 75
        while len(commands) < 1 and deadline:
            deadline -= 1
            command = consumer.poll(0.2)
            if command is not None and command.job_id == job_id:
                commands.append(command)
        assert len(commands) == 1
        pause = commands[0]
        assert (pause.type, pause.command_id, pause.data) == ("job.pause", accepted["command_id"], {"reason": "quota"})
        assert pause.traceparent == headers["traceparent"]
        original = {"schema_version": 1, "command_id": pause.command_id, "type": pause.type, "job_id": job_id, "requested_at": pause.requested_at,
                    "requested_by": None, "idempotency_key": None, "data": pause.data}
        raw.produce("progress.commands", key=job_id, value=json.dumps(original))
        raw.produce("progress.commands", key=job_id, value=b'{"type":"job.explode"}')
        raw.flush(10)
        assert post(f"{bridge.http_url}/api/v1/bulk-jobs/{job_id}/cancel")[0] == 202
        later = []
        for _ in range(75):
            command = consumer.poll(0.2)
            if command is not None and command.job_id == job_id:
                later.append(command)
            if later and later[-1].type == "job.cancel":
                break
        assert [c.type for c in later] == ["job.cancel"], "the repeated pause and the invalid record are skipped"
    finally:
        consumer.close()

"""End to end against the built binary: confluent-kafka as the monitor, websockets as the dashboard's hook."""
import asyncio
import json
import shutil
import subprocess
import time
import uuid

import pytest
import websockets
from confluent_kafka import Consumer, TopicPartition

from conftest import BINARY, ROOT, Bridge, http_get, job_state, metric, receive_until, wait_for, assert_outbound, assert_matches
from monitor import Monitor, a_job, event


def subscribe_url(bridge, job_id, **extra):
    query = "&".join(f"{k}={v}" for k, v in {"job_id": job_id, "token": "t0k3n", "connection_id": "conn_e2e", **extra}.items())
    return f"{bridge.ws_url}/?{query}"


def test_a_job_reaches_a_subscriber_with_the_right_progress(bridge):
    job_id = "job_e2e_" + uuid.uuid4().hex[:8]
    events = a_job(job_id, videos=5, fail={3})

    async def scenario():
        async with websockets.connect(subscribe_url(bridge, job_id)) as ws:
            ack = assert_outbound(json.loads(await ws.recv()))
            assert ack["type"] == "connection.ack" and ack["data"]["connection_id"] == "conn_e2e"
            snapshot = assert_outbound(json.loads(await ws.recv()))
            assert snapshot["type"] == "job.snapshot" and snapshot["data"]["job"] is None

            monitor = Monitor(bridge.bootstrap)
            for e in events:
                monitor.send(job_id, e, headers=[("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")])
            monitor.send(job_id, events[5])  # the monitor retried: a duplicate
            monitor.flush()
            return await receive_until(ws, lambda m: m["type"] == "job.completed")

    messages = asyncio.run(scenario())
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert len(messages) == len(events), "each event exactly once (the duplicate is not delivered)"
    final = messages[-1]["data"]
    assert final["state"] == "completed"
    assert (final["total_videos"], final["completed"], final["failed"], final["pending"], final["processing"]) == (5, 4, 1, 0, 0)
    assert final["percent_complete"] == 100
    assert final["success_rate"] == 0.8
    assert final["processing_time_ms"]["samples"] == 4
    assert final["processing_time_ms"]["p50"] == 2000
    assert final["title"] == "E2E job"
    assert final["eta_seconds"] == 0
    failed = [m for m in messages if m["type"] == "video.failed"]
    assert failed[0]["data"]["id"] == "vid_003" and failed[0]["data"]["error"]["code"] == "RENDER"


def test_bad_events_go_to_the_dead_letter_topic_and_the_consumer_keeps_going(bridge):
    job_id = "job_dlq_" + uuid.uuid4().hex[:8]
    monitor = Monitor(bridge.bootstrap)
    start = a_job(job_id, videos=2)[:2]
    bad = {
        "malformed_json": b"{not json",
        "schema_violation": json.dumps(event(job_id, "video.completed", {"video_id": "v1"}, 10)),
        "unsupported_schema_version": json.dumps({**event(job_id, "job.progress", {}, 10), "schema_version": 2}),
        "unknown_type": json.dumps(event(job_id, "video.teleported", {}, 10)),
        "invalid_transition": json.dumps(event(job_id, "job.state_changed", {"from": "completed", "to": "running"}, 10)),
    }
    for e in start:
        monitor.send(job_id, e)
    for value in bad.values():
        monitor.send(job_id, value, headers=[("traceparent", b"00-abc-def-01")])
    after = event(job_id, "video.completed", {"video_id": "vid_001", "processing_ms": 5}, 20)
    monitor.send(job_id, after)
    monitor.flush()

    consumer = Consumer({"bootstrap.servers": bridge.bootstrap, "group.id": "dlq-reader-" + uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["progress.events.dlq"])
    found = {}
    deadline = time.time() + 30
    while time.time() < deadline and len(found) < len(bad):
        message = consumer.poll(0.5)
        if message is None or message.error():
            continue
        headers = {k: (v.decode() if v else v) for k, v in (message.headers() or [])}
        if message.key() == job_id.encode():
            found[headers["x-dlq-reason"]] = (message.value(), headers)
    consumer.close()
    assert set(found) == set(bad), found.keys()
    for reason, (value, headers) in found.items():
        original = bad[reason]
        assert value == (original if isinstance(original, bytes) else original.encode()), reason
        assert headers["x-dlq-source-topic"] == "progress.events"
        assert int(headers["x-dlq-source-offset"]) >= 0 and int(headers["x-dlq-source-partition"]) >= 0
        assert headers["x-dlq-detail"]
        assert headers["traceparent"] == "00-abc-def-01"

    # The valid event after the bad ones was applied.
    assert wait_for(lambda: (job_state(bridge, job_id) or {}).get("completed") == 1, timeout=10), \
        "the valid event after the bad ones was not applied"

    status, body, _ = http_get(bridge.admin_url + "/metrics")
    text = body.decode()
    for reason in bad:
        line = next(l for l in text.splitlines() if l.startswith(f'progress_bridge_events_invalid_total{{reason="{reason}"}}'))
        assert float(line.split()[-1]) >= 1, line
    dead = next(l for l in text.splitlines() if l.startswith("progress_bridge_events_dead_lettered_total"))
    assert float(dead.split()[-1]) >= len(bad)


def test_a_subscriber_that_reconnects_gets_what_it_missed(bridge):
    job_id = "job_resume_" + uuid.uuid4().hex[:8]
    events = a_job(job_id, videos=4)
    monitor = Monitor(bridge.bootstrap)

    async def scenario():
        async with websockets.connect(subscribe_url(bridge, job_id)) as ws:
            await receive_until(ws, lambda m: m["type"] == "job.snapshot")
            for e in events[:6]:
                monitor.send(job_id, e)
            monitor.flush()
            first = []
            while len(first) < 6:
                first += [m for m in await receive_until(ws, lambda m: m["seq"] > 0) if m["seq"] > 0]
        for e in events[6:]:
            monitor.send(job_id, e)
        monitor.flush()
        await asyncio.sleep(1.0)
        last_seen = first[-1]["seq"]
        # Reconnect, snapshot first, then ask for the rest with a resume message.
        async with websockets.connect(subscribe_url(bridge, job_id)) as ws:
            snapshot = await receive_until(ws, lambda m: m["type"] == "job.snapshot")
            await ws.send(json.dumps({"type": "resume", "last_seq": last_seen}))
            replay = await receive_until(ws, lambda m: m["type"] == "job.completed")
        # Reconnect with last_seq in the URL: a replay instead of a snapshot.
        async with websockets.connect(subscribe_url(bridge, job_id, last_seq=last_seen)) as ws:
            by_url = await receive_until(ws, lambda m: m["type"] == "job.completed")
            await ws.send(json.dumps({"type": "ping", "id": 7}))
            pong = await receive_until(ws, lambda m: m["type"] == "pong")
        return first, snapshot, replay, by_url, pong

    first, snapshot, replay, by_url, pong = asyncio.run(scenario())
    # seq is the event's input offset + 1: strictly increasing per job, with gaps where other jobs' records lie.
    seqs = [m["seq"] for m in first]
    assert seqs == sorted(set(seqs)) and len(seqs) == 6
    last_seen = seqs[-1]
    assert snapshot[-1]["data"]["job"]["job_id"] == job_id
    assert snapshot[-1]["seq"] > last_seen
    ok = next(m for m in replay if m["type"] == "resume.ok")
    assert ok["data"]["from_seq"] == last_seen + 1
    replayed = [m for m in replay if m["type"] not in ("resume.ok",)]
    replayed_seqs = [m["seq"] for m in replayed]
    assert len(replayed) == len(events) - 6 and replayed_seqs == sorted(set(replayed_seqs)) and replayed_seqs[0] > last_seen
    assert replayed_seqs[-1] == snapshot[-1]["seq"], "the replay ends where the snapshot stands"
    assert [m["type"] for m in by_url][0] == "connection.ack"
    assert not any(m["type"] == "job.snapshot" for m in by_url)
    assert [m["seq"] for m in by_url if m["type"] not in ("connection.ack", "resume.ok")] == replayed_seqs
    assert [m for m in by_url if m["seq"] > 0] == replayed, "the same messages, however asked for"
    assert pong[-1]["data"]["id"] == 7


def test_resume_from_too_long_ago_says_so_and_sends_a_snapshot():
    b = Bridge("--no-demo-monitor", "--history-per-job", "3").wait_ready()
    try:
        job_id = "job_old_" + uuid.uuid4().hex[:8]
        monitor = Monitor(b.bootstrap)
        for e in a_job(job_id, videos=3):
            monitor.send(job_id, e)
        monitor.flush()

        assert wait_for(lambda: (job_state(b, job_id) or {}).get("state") == "completed", timeout=15)

        async def scenario():
            async with websockets.connect(subscribe_url(b, job_id, last_seq=1)) as ws:
                return await receive_until(ws, lambda m: m["type"] == "job.snapshot")

        messages = asyncio.run(scenario())
        error = next(m for m in messages if m["type"] == "error")
        assert error["data"]["code"] == "resume_unavailable"
        assert messages[-1]["data"]["job"]["state"] == "completed"
    finally:
        assert b.stop()[0] == 0


def test_rest_api(bridge):
    job_id = "job_rest_" + uuid.uuid4().hex[:8]
    monitor = Monitor(bridge.bootstrap)
    for e in a_job(job_id, videos=6, fail={2, 5}):
        monitor.send(job_id, e)
    monitor.flush()
    assert wait_for(lambda: (job_state(bridge, job_id) or {}).get("state") == "completed", timeout=15)
    job = assert_matches("outbound/job-progress.schema.json", "", job_state(bridge, job_id))
    assert (job["completed"], job["failed"], job["percent_complete"]) == (4, 2, 100)

    status, body, content_type = http_get(f"{bridge.http_url}/api/v1/bulk-jobs?state=completed")
    assert status == 200 and content_type.startswith("application/json")
    assert job_id in [j["job_id"] for j in assert_matches("outbound/rest.schema.json", "#/$defs/job_list", json.loads(body))["jobs"]]

    status, body, _ = http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{job_id}/videos?state=failed&sort=id&order=desc")
    page = assert_matches("outbound/rest.schema.json", "#/$defs/video_list", json.loads(body))
    assert [v["id"] for v in page["videos"]] == ["vid_005", "vid_002"] and page["total"] == 2

    status, body, _ = http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{job_id}/videos?sort=processing_ms&order=desc&limit=2&offset=1")
    page = json.loads(body)
    assert page["total"] == 6 and [v["id"] for v in page["videos"]] == ["vid_004", "vid_003"]

    status, body, _ = http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{job_id}/videos?q=video%206")
    assert [v["id"] for v in json.loads(body)["videos"]] == ["vid_006"]

    status, body, _ = http_get(f"{bridge.http_url}/api/v1/bulk-jobs/job_nope")
    assert status == 404 and assert_matches("outbound/rest.schema.json", "#/$defs/error", json.loads(body))["error"]["code"] == "job_not_found"

    status, body, _ = http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{job_id}/videos?sort=color")
    assert status == 400 and "sort" in json.loads(body)["error"]["message"]
    status, body, _ = http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{job_id}/videos?limit=0")
    assert status == 400 and "limit" in json.loads(body)["error"]["message"]


def test_websocket_refuses_a_bad_subscription_and_answers_bad_messages(bridge):
    async def scenario():
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(f"{bridge.ws_url}/?token=x"):
                pass
        response = refused.value.response
        assert response.status_code == 400
        error = json.loads(response.body)["error"]
        assert error["code"] == "invalid_subscription" and "job_id" in error["message"]
        async with websockets.connect(f"{bridge.ws_url}/ws?job_id=job_x1") as ws:
            await receive_until(ws, lambda m: m["type"] == "job.snapshot")
            await ws.send("not json")
            first = await receive_until(ws, lambda m: m["type"] == "error")
            await ws.send(json.dumps({"type": "dance"}))
            second = await receive_until(ws, lambda m: m["type"] == "error")
            await ws.send(json.dumps({"type": "ping"}))
            await receive_until(ws, lambda m: m["type"] == "pong")
        return first[-1], second[-1]

    first, second = asyncio.run(scenario())
    assert first["data"]["code"] == "invalid_message"
    assert second["data"]["code"] == "unknown_message_type"


def test_metrics_pass_promtool_and_health_endpoints(bridge):
    status, body, content_type = http_get(bridge.admin_url + "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus)"
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    text = body.decode()
    for name in ["progress_bridge_events_consumed_total", "progress_bridge_events_invalid_total", "progress_bridge_events_dead_lettered_total",
                 "progress_bridge_events_duplicate_total", "progress_bridge_consumer_lag", "progress_bridge_active_jobs",
                 "progress_bridge_websocket_connections", "progress_bridge_messages_sent_total", "progress_bridge_messages_conflated_total",
                 "progress_bridge_messages_dropped_total", "progress_bridge_event_age_at_delivery_seconds_bucket"]:
        assert name in text, name
    assert "job_e2e" not in text and "job_id" not in text, "job ids must not be metric labels"
    assert http_get(bridge.admin_url + "/healthz")[0] == 200
    status, body, _ = http_get(bridge.admin_url + "/readyz")
    assert status == 200 and json.loads(body)["status"] == "ready"


@pytest.mark.parametrize("args,env,expected", [
    (["--port", "eighty"], {}, "--port"),
    ([], {"BRIDGE_PORT": "99999"}, "BRIDGE_PORT"),
    (["--log-format", "xml"], {}, "--log-format"),
    (["--kafka-config", "novalue"], {}, "--kafka-config"),
    (["--kafka-bootstrap", "127.0.0.1:1", "--insecure-no-auth", "--kafka-config", "no.such.property=1"], {}, "no.such.property"),
    (["--kafka-bootstrap", "127.0.0.1:1"], {}, "--insecure-no-auth"),
    (["--jwt-secret", "short"], {}, "--jwt-secret must be at least 32 bytes"),
    (["--jwt-public-key", "/nonexistent.pem"], {}, "--jwt-public-key /nonexistent.pem cannot be read"),
    (["--schemas", "/nonexistent"], {}, "--schemas /nonexistent"),
])
def test_bad_configuration_is_refused_with_a_precise_message(args, env, expected):
    import os
    result = subprocess.run([BINARY, *args], cwd=ROOT, capture_output=True, text=True, timeout=30, env={**os.environ, **env})
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout, result.stderr


def test_help_documents_every_flag():
    result = subprocess.run([BINARY, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for flag in ["--kafka-bootstrap", "--topic", "--dlq-topic", "--group-id", "--kafka-config", "--port", "--admin-port",
                 "--schemas", "--log-level", "--log-format", "--demo-monitor", "KAFKA_BOOTSTRAP_SERVERS", "--jwt-secret",
                 "--jwt-public-key", "--jwks", "--jwt-issuer", "--jwt-audience", "--insecure-no-auth", "--allowed-origin"]:
        assert flag in result.stdout, flag


def test_embedded_default_shows_live_demo_progress_and_stops_cleanly_on_sigterm():
    b = Bridge().wait_ready()
    try:
        async def scenario():
            async with websockets.connect(f"{b.ws_url}/?job_id=job_demo_0001&token=demo&connection_id=c1") as ws:
                return await receive_until(ws, lambda m: m["type"].startswith("video.") , timeout=20)

        messages = asyncio.run(scenario())
        assert messages[0]["type"] == "connection.ack"
        assert messages[1]["type"] == "job.snapshot"
        status, body, _ = http_get(b.http_url + "/api/v1/bulk-jobs")
        assert status == 200 and json.loads(body)["total"] >= 1
    finally:
        code, took = b.stop()
    assert code == 0
    assert took < 30
    assert any("left the group" in line for line in b.lines)


def test_a_large_snapshot_arrives_whole(bridge):
    job_id = "job_large_" + uuid.uuid4().hex[:6]
    monitor = Monitor(bridge.bootstrap)
    for i in range(300):
        monitor.send(job_id, event(job_id, "video.created", {"video_id": f"v{i:03d}", "title": "t" * 1000}, i))
    monitor.flush()
    assert wait_for(lambda: (job_state(bridge, job_id) or {}).get("events_applied") == 300, timeout=20)

    async def scenario():
        async with websockets.connect(subscribe_url(bridge, job_id), max_size=None) as ws:
            return await receive_until(ws, lambda m: m["type"] == "job.snapshot")

    snapshot = asyncio.run(scenario())[-1]
    assert snapshot["data"]["videos_total"] == 300 and len(snapshot["data"]["videos"]) == 300
    assert len(json.dumps(snapshot)) > 300_000


def test_under_steady_traffic_checkpoints_commit_and_the_dashboard_queries_only_exported_metrics(tmp_path):
    """The embedded default (the demo monitor publishes all the time): the last committed checkpoint stays recent,
    and every metric the Grafana dashboard queries is one the bridge exports."""
    b = Bridge().wait_ready().wait_owning(4)
    try:
        samples = []
        for _ in range(4):
            time.sleep(2)
            samples.append((time.time(), metric(b, "progress_bridge_last_commit_timestamp_seconds")))
        assert all(now - last < 5 for now, last in samples), samples
        assert samples[-1][1] > samples[0][1], f"the last commit advances while events arrive: {samples}"
        # Labelled families appear with their first sample (lag and round trips within a few seconds).
        assert wait_for(lambda: "progress_bridge_consumer_lag{" in http_get(b.admin_url + "/metrics")[1].decode()
                        and "progress_bridge_kafka_broker_rtt_seconds{" in http_get(b.admin_url + "/metrics")[1].decode(), timeout=20)
        scrape = tmp_path / "metrics.txt"
        scrape.write_bytes(http_get(b.admin_url + "/metrics")[1])
        check = subprocess.run([shutil.which("python3") or "python3", str(ROOT / "deploy" / "check_dashboard.py"),
                                str(ROOT / "deploy" / "grafana" / "progress-bridge.json"), str(scrape)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "all exported" in check.stdout
        # And the README documents every metric the bridge exports.
        families = {line.split()[2] for line in scrape.read_text().splitlines() if line.startswith("# TYPE progress_bridge_")}
        readme = (ROOT / "README.md").read_text()
        undocumented = sorted(f for f in families if f"`{f.removeprefix('progress_bridge_')}" not in readme and f"`{f}" not in readme)
        assert len(families) >= 30 and not undocumented, undocumented
    finally:
        assert b.stop()[0] == 0

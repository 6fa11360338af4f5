"""Job control: REST commands relayed to the command topic for the monitor, against the built binary."""
import json
import pathlib
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer

from conftest import ROOT, Bridge, assert_matches, http_get, job_state, metric_sample, schema_validator, wait_for
from monitor import Monitor, a_job, event
from test_auth import SECRET, token


COMMAND_VALIDATOR = schema_validator("commands/command.schema.json")
CREATE_EXAMPLE = json.loads((ROOT / "schemas" / "commands" / "job.create.schema.json").read_text())["examples"][0]


def post(url, body=None, headers=None, method="POST"):
    """(status, JSON body or None, headers) without raising on 4xx/5xx."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None, response.headers
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None, error.headers


class CommandTopic:
    """The monitor's side: reads the command topic from its start."""

    def __init__(self, bootstrap, topic="progress.commands"):
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "monitor-" + uuid.uuid4().hex[:6],
                                  "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10, "enable.auto.commit": False})
        self.consumer.subscribe([topic])

    def read(self, count, timeout=15.0, settle=0.0):
        """At least `count` commands (then `settle` more seconds for any extra): [(key, value dict)]."""
        records = []
        deadline = time.time() + timeout
        while time.time() < deadline and len(records) < count:
            message = self.consumer.poll(0.2)
            if message is not None and not message.error():
                records.append((message.key().decode(), json.loads(message.value())))
        end = time.time() + settle
        while time.time() < end:
            message = self.consumer.poll(0.2)
            if message is not None and not message.error():
                records.append((message.key().decode(), json.loads(message.value())))
        return records

    def close(self):
        self.consumer.close()


def running_job(bridge, monitor, job):
    events = a_job(job, videos=3)
    for e in events[:2]:  # pending → running
        monitor.send(job, e)
    monitor.flush()
    assert wait_for(lambda: (job_state(bridge, job) or {}).get("state") == "running", timeout=15)
    return events


def test_pause_is_published_once_for_retries_and_the_job_changes_when_the_monitor_says_so(bridge):
    job = "job_ctl_" + uuid.uuid4().hex[:6]
    monitor = Monitor(bridge.bootstrap)
    running_job(bridge, monitor, job)
    topic = CommandTopic(bridge.bootstrap)
    try:
        url = f"{bridge.http_url}/api/v1/bulk-jobs/{job}/pause"
        key = {"Idempotency-Key": "pause-" + job}
        status, first, _ = post(url, {"reason": "quota"}, key)
        assert_matches("outbound/rest.schema.json", "#/$defs/command_accepted", first)
        assert status == 202 and first["type"] == "job.pause" and first["job_id"] == job and first["repeated"] is False
        status, again, _ = post(url, {"reason": "quota"}, key)
        assert status == 202 and again["command_id"] == first["command_id"] and again["repeated"] is True
        status, reused, _ = post(url, {"reason": "something else"}, key)
        assert status == 422 and assert_matches("outbound/rest.schema.json", "#/$defs/error", reused)["error"]["code"] == "idempotency_key_reused"
        records = topic.read(1, settle=1.5)
        assert len(records) == 1, f"a retried request must not publish twice: {records}"
        key_, command = records[0]
        COMMAND_VALIDATOR.validate(command)
        assert key_ == job and command["command_id"] == first["command_id"] and command["data"] == {"reason": "quota"}
        assert command["idempotency_key"] == "pause-" + job and command["requested_by"] is None
        # The bridge does not pause the job: the monitor does, and says so.
        assert job_state(bridge, job)["state"] == "running"
        monitor.send(job, event(job, "job.state_changed", {"from": "running", "to": "pausing"}, 5_000))
        monitor.send(job, event(job, "job.state_changed", {"from": "pausing", "to": "paused"}, 6_000))
        monitor.flush()
        assert wait_for(lambda: job_state(bridge, job)["state"] == "paused", timeout=15)
        status, refused, _ = post(url)
        assert status == 409 and refused["error"]["code"] == "invalid_state" and "paused" in refused["error"]["message"]
        status, resumed, _ = post(f"{bridge.http_url}/api/v1/bulk-jobs/{job}/resume")
        assert status == 202 and resumed["type"] == "job.resume" and resumed["command_id"] != first["command_id"]
        status, canceled, _ = post(f"{bridge.http_url}/api/v1/bulk-jobs/{job}/cancel", {})
        assert status == 202
        later = topic.read(2)
        assert [c["type"] for _, c in later] == ["job.resume", "job.cancel"]
        for _, c in later:
            COMMAND_VALIDATOR.validate(c)
        assert metric_sample(bridge, "progress_bridge_commands_total", type="job.pause", outcome="repeated") == 1
    finally:
        topic.close()


def test_create_generates_the_job_id_and_bad_requests_are_refused_clearly(bridge):
    topic = CommandTopic(bridge.bootstrap)
    try:
        key = {"Idempotency-Key": "create-" + uuid.uuid4().hex}
        status, created, headers = post(f"{bridge.http_url}/api/v1/bulk-jobs", CREATE_EXAMPLE, key)
        assert status == 202 and created["type"] == "job.create"
        assert headers["Location"] == f"/api/v1/bulk-jobs/{created['job_id']}"
        status, retried, _ = post(f"{bridge.http_url}/api/v1/bulk-jobs", CREATE_EXAMPLE, key)
        assert retried["job_id"] == created["job_id"], "a retried create names the same job"
        records = [c for _, c in topic.read(1, settle=1.0) if c["type"] == "job.create"]
        assert len(records) == 1 and records[0]["job_id"] == created["job_id"] and records[0]["data"] == CREATE_EXAMPLE
        COMMAND_VALIDATOR.validate(records[0])
        # Bad requests: the body, the state, the size, the id, the key.
        status, bad, _ = post(f"{bridge.http_url}/api/v1/bulk-jobs", {**CREATE_EXAMPLE, "priority": "asap"})
        assert status == 400 and bad["error"]["code"] == "invalid_body" and "/priority" in bad["error"]["message"]
        assert post(f"{bridge.http_url}/api/v1/bulk-jobs", b"{not json")[0] == 400
        assert post(f"{bridge.http_url}/api/v1/bulk-jobs", b'{"title":"' + b"x" * 70_000 + b'"}')[0] == 413
        assert post(f"{bridge.http_url}/api/v1/bulk-jobs/job_nobody_knows/pause")[1]["error"]["code"] == "job_not_found"
        assert post(f"{bridge.http_url}/api/v1/bulk-jobs/not-a-job/pause")[0] == 404
        form = post(f"{bridge.http_url}/api/v1/bulk-jobs", b"title=x", {"Content-Type": "application/x-www-form-urlencoded"})
        assert form[0] == 415 and form[1]["error"]["code"] == "unsupported_media_type", "what another site can post unasked is refused"
        assert post(f"{bridge.http_url}/api/v1/bulk-jobs", json.dumps(CREATE_EXAMPLE).encode(), {"Content-Type": "text/plain"})[0] == 415
        assert post(f"{bridge.http_url}/api/v1/bulk-jobs", CREATE_EXAMPLE, {"Idempotency-Key": "x" * 129})[0] == 400
        job = "job_done_" + uuid.uuid4().hex[:6]
        monitor = Monitor(bridge.bootstrap)
        for e in a_job(job, videos=1):
            monitor.send(job, e)
        monitor.flush()
        assert wait_for(lambda: (job_state(bridge, job) or {}).get("state") == "completed", timeout=15)
        status, terminal, _ = post(f"{bridge.http_url}/api/v1/bulk-jobs/{job}/cancel")
        assert status == 409 and "completed" in terminal["error"]["message"]
    finally:
        topic.close()


@pytest.fixture(scope="module")
def secured():
    b = Bridge("--no-demo-monitor", "--jwt-secret", SECRET, "--allowed-origin", "https://dash.example.com").wait_ready()
    yield b
    assert b.stop()[0] == 0


def test_commands_need_a_control_grant_apart_from_watching(secured):
    b = secured
    job, other = "job_mine_" + uuid.uuid4().hex[:6], "job_other_" + uuid.uuid4().hex[:6]
    monitor = Monitor(b.bootstrap)
    for j in (job, other):
        for e in a_job(j, videos=2)[:2]:
            monitor.send(j, e)
    monitor.flush()
    watcher = token(["*"])
    assert wait_for(lambda: all((json.loads(http_get(f"{b.http_url}/api/v1/bulk-jobs/{j}?token={watcher}")[1]) or {}).get("state") == "running"
                                for j in (job, other)), timeout=15)
    def pause(j, tok):
        return post(f"{b.http_url}/api/v1/bulk-jobs/{j}/pause", headers={"Authorization": f"Bearer {tok}"} if tok else {})
    assert pause(job, None)[0] == 401
    assert pause(job, watcher)[0] == 403, "watching is not controlling"
    controller = token([job, other], control=[job])
    status, accepted, _ = pause(job, controller)
    assert status == 202
    assert pause(other, controller)[0] == 403
    assert post(f"{b.http_url}/api/v1/bulk-jobs", CREATE_EXAMPLE, {"Authorization": f"Bearer {controller}"})[0] == 403
    admin = token(["*"], control=["*"], sub="ops-alice")
    status, created, _ = post(f"{b.http_url}/api/v1/bulk-jobs", CREATE_EXAMPLE, {"Authorization": f"Bearer {admin}"})
    assert status == 202
    topic = CommandTopic(b.bootstrap)
    try:
        records = {c["command_id"]: c for _, c in topic.read(2)}
        assert records[created["command_id"]]["requested_by"] == "ops-alice"
        assert records[accepted["command_id"]]["requested_by"] == "dashboard"
    finally:
        topic.close()


def test_cors_preflight_and_answers_for_allowed_origins_only(secured):
    b = secured
    def raw(method, path, headers):
        request = urllib.request.Request(b.http_url + path, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.headers
    preflight = {"Origin": "https://dash.example.com", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"}
    status, headers = raw("OPTIONS", "/api/v1/bulk-jobs/job_x/pause", preflight)
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "https://dash.example.com"
    assert "POST" in headers["Access-Control-Allow-Methods"] and "Idempotency-Key" in headers["Access-Control-Allow-Headers"]
    status, headers = raw("OPTIONS", "/api/v1/bulk-jobs", {**preflight, "Origin": "https://evil.example.com"})
    assert headers["Access-Control-Allow-Origin"] is None
    status, headers = raw("GET", "/api/v1/bulk-jobs?token=" + token(["*"]), {"Origin": "https://dash.example.com"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://dash.example.com" and headers["Vary"] == "Origin"
    status, headers = raw("GET", "/api/v1/bulk-jobs", {"Origin": "https://dash.example.com"})
    assert status == 401 and headers["Access-Control-Allow-Origin"] == "https://dash.example.com", "a browser may read why it was refused"
    status, headers = raw("GET", "/api/v1/bulk-jobs?token=" + token(["*"]), {"Origin": "https://evil.example.com"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] is None


def test_a_command_kafka_does_not_take_is_answered_503_and_a_retry_succeeds(mock_kafka):
    b = Bridge("--insecure-no-auth", kafka=mock_kafka.bootstrap).wait_ready()
    try:
        monitor = Monitor(mock_kafka.bootstrap)
        job = "job_outage_" + uuid.uuid4().hex[:6]
        running_job(b, monitor, job)
        key = {"Idempotency-Key": "outage-" + job}
        mock_kafka.command("down 1")
        started = time.time()
        status, body, _ = post(f"{b.http_url}/api/v1/bulk-jobs/{job}/pause", None, key)
        assert status == 503 and body["error"]["code"] == "commands_unavailable" and time.time() - started < 12
        assert http_get(b.http_url + "/api/v1/bulk-jobs")[0] == 200, "reads keep working"
        mock_kafka.command("up 1")
        assert wait_for(lambda: post(f"{b.http_url}/api/v1/bulk-jobs/{job}/pause", None, key)[0] == 202, timeout=30, interval=1)
    finally:
        assert b.stop()[0] == 0


def test_the_embedded_demo_monitor_acts_on_the_dashboards_commands():
    b = Bridge().wait_ready()  # the embedded default: mock cluster and demo monitor
    try:
        job = "job_demo_0002"
        assert wait_for(lambda: (job_state(b, job) or {}).get("state") == "running", timeout=20)
        assert post(f"{b.http_url}/api/v1/bulk-jobs/{job}/pause")[0] == 202
        assert wait_for(lambda: job_state(b, job)["state"] == "paused", timeout=15), job_state(b, job)
        applied = job_state(b, job)["events_applied"]
        time.sleep(1.5)
        assert job_state(b, job)["events_applied"] == applied, "a paused demo job stands still"
        assert post(f"{b.http_url}/api/v1/bulk-jobs/{job}/resume")[0] == 202
        assert wait_for(lambda: job_state(b, job)["state"] in ("running", "completing", "completed"), timeout=15)
        assert post(f"{b.http_url}/api/v1/bulk-jobs/{job}/cancel")[0] == 202
        assert wait_for(lambda: job_state(b, job)["state"] == "canceled", timeout=15)
        status, created, _ = post(f"{b.http_url}/api/v1/bulk-jobs", CREATE_EXAMPLE)
        assert status == 202
        assert wait_for(lambda: (job_state(b, created["job_id"]) or {}).get("title") == CREATE_EXAMPLE["title"], timeout=15)
    finally:
        assert b.stop()[0] == 0


def test_a_connected_dashboard_sends_commands_over_its_websocket(secured):
    import asyncio
    import websockets
    from conftest import receive_until
    b = secured
    job = "job_wscmd_" + uuid.uuid4().hex[:6]
    monitor = Monitor(b.bootstrap)
    for e in a_job(job, videos=2)[:2]:
        monitor.send(job, e)
    monitor.flush()
    watcher, controller = token([job]), token([job], control=[job])
    assert wait_for(lambda: (json.loads(http_get(f"{b.http_url}/api/v1/bulk-jobs/{job}?token={watcher}")[1]) or {}).get("state") == "running", timeout=15)

    async def command(tok, message):
        async with websockets.connect(f"{b.ws_url}/?job_id={job}&token={tok}") as ws:
            await receive_until(ws, lambda m: m["type"] == "job.snapshot")
            await ws.send(json.dumps(message))
            return (await receive_until(ws, lambda m: m["type"] in ("command.accepted", "error")))[-1]

    refused = asyncio.run(command(watcher, {"type": "command", "command": "pause", "id": 1}))
    assert refused["type"] == "error" and refused["data"]["code"] == "forbidden" and refused["data"]["id"] == 1
    accepted = asyncio.run(command(controller, {"type": "command", "command": "pause", "reason": "lunch", "id": "a", "idempotency_key": "k-" + job}))
    assert accepted["type"] == "command.accepted" and accepted["data"]["type"] == "job.pause" and accepted["data"]["id"] == "a"
    again = asyncio.run(command(controller, {"type": "command", "command": "pause", "reason": "lunch", "idempotency_key": "k-" + job}))
    assert again["data"]["command_id"] == accepted["data"]["command_id"] and again["data"]["repeated"] is True
    bad = asyncio.run(command(controller, {"type": "command", "command": "explode"}))
    assert bad["type"] == "error" and bad["data"]["code"] == "invalid_message"
    topic = CommandTopic(b.bootstrap)
    try:
        records = [c for k, c in topic.read(1, settle=1.0) if k == job]
        assert [c["command_id"] for c in records] == [accepted["data"]["command_id"]] and records[0]["data"] == {"reason": "lunch"}
    finally:
        topic.close()

"""The job-list feed (jobs=* / jobs=a,b on one WebSocket) and the dashboard's files, against the built binary."""
import asyncio
import json
import socket
import urllib.request
import uuid

import pytest
import websockets

from conftest import OUTBOUND_COUNT, Bridge, assert_outbound, http_get, metric, receive_until, wait_for
from monitor import Monitor, a_job
from test_auth import SECRET, subscribe, token


def feed_url(bridge, jobs, token_="t0k3n"):
    return f"{bridge.ws_url}/?jobs={jobs}&token={token_}&connection_id=conn_feed"


def test_a_feed_of_all_jobs_starts_with_a_jobs_snapshot_then_carries_job_messages_only(bridge):
    before = "job_feed_old_" + uuid.uuid4().hex[:6]
    later = "job_feed_new_" + uuid.uuid4().hex[:6]
    monitor = Monitor(bridge.bootstrap)
    for e in a_job(before, videos=2):
        monitor.send(before, e)
    monitor.flush()
    assert wait_for(lambda: (json.loads(http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{before}")[1]) or {}).get("state") == "completed",
                    timeout=15)

    async def scenario():
        async with websockets.connect(feed_url(bridge, "*")) as ws:
            opening = await receive_until(ws, lambda m: m["type"] == "jobs.snapshot")
            for e in a_job(later, videos=3, fail={2}):
                monitor.send(later, e)
            monitor.flush()
            live = await receive_until(ws, lambda m: m["type"] == "job.completed" and m["job_id"] == later)
            await ws.send(json.dumps({"type": "resume", "last_seq": 1}))
            refused = await receive_until(ws, lambda m: m["type"] == "error")
            return opening, live, refused

    checked = OUTBOUND_COUNT[0]
    opening, live, refused = asyncio.run(scenario())
    assert OUTBOUND_COUNT[0] - checked == len(opening) + len(live) + len(refused), "every message was checked against its schema"
    ack, snapshot = opening[0], opening[-1]
    assert ack["type"] == "connection.ack" and ack["job_id"] is None and ack["data"]["jobs"] == "*"
    entries = {entry["job_id"]: entry for entry in snapshot["data"]["jobs"]}
    assert snapshot["seq"] == 0 and entries[before]["job"]["state"] == "completed" and entries[before]["seq"] > 0
    assert snapshot["data"]["jobs_total"] == len(entries) and snapshot["data"]["jobs_truncated"] is False
    mine = [m for m in live if m["job_id"] == later]
    assert {m["type"] for m in mine} <= {"job.state_changed", "job.progress", "job.completed"}, "a feed carries job messages only"
    assert not any(m["type"].startswith("video.") for m in live)
    seqs = [m["seq"] for m in mine]
    assert seqs == sorted(set(seqs)) and len(seqs) >= 3, "each job's messages in seq order"
    final = mine[-1]["data"]
    assert (final["completed"], final["failed"], final["total_videos"], final["percent_complete"]) == (2, 1, 3, 100)
    assert refused[-1]["data"]["code"] == "invalid_message", "resume is for one-job subscriptions"
    assert wait_for(lambda: metric(bridge, "progress_bridge_websocket_connections") == 0, timeout=10)


def test_a_feed_is_bounded_and_parsed_strictly(bridge):
    too_many = ",".join(f"job_{i}" for i in range(101))
    for bad in [too_many, "job_a,,job_b", "nope", "*&last_seq=4"]:
        outcome = asyncio.run(subscribe(feed_url(bridge, bad)))
        assert outcome.status == 400 and outcome.body["error"]["code"] == "invalid_subscription", bad[:40]
    both = asyncio.run(subscribe(f"{bridge.ws_url}/?jobs=*&job_id=job_a&token=x"))
    assert both.status == 400


@pytest.fixture(scope="module")
def secured():
    b = Bridge("--no-demo-monitor", "--jwt-secret", SECRET).wait_ready()
    yield b
    assert b.stop()[0] == 0
    assert SECRET not in "".join(b.lines)


def test_a_feed_carries_only_the_jobs_the_token_grants(secured):
    b = secured
    mine, theirs = "job_mine_" + uuid.uuid4().hex[:6], "job_theirs_" + uuid.uuid4().hex[:6]
    monitor = Monitor(b.bootstrap)
    for job in (mine, theirs):
        for e in a_job(job, videos=1):
            monitor.send(job, e)
    monitor.flush()
    grant_all = token(["*"])
    assert wait_for(lambda: all((json.loads(http_get(f"{b.http_url}/api/v1/bulk-jobs/{j}?token={grant_all}")[1]) or {}).get("state") == "completed"
                                for j in (mine, theirs)), timeout=15)

    async def opening(url):
        async with websockets.connect(url) as ws:
            return await receive_until(ws, lambda m: m["type"] == "jobs.snapshot")

    granted = asyncio.run(opening(feed_url(b, "*", token([mine]))))[-1]
    assert [entry["job_id"] for entry in granted["data"]["jobs"]] == [mine], "jobs=* means every job the token grants"
    listed = asyncio.run(opening(feed_url(b, f"{mine},{theirs}", grant_all)))[-1]
    assert {entry["job_id"] for entry in listed["data"]["jobs"]} == {mine, theirs}
    forbidden = asyncio.run(subscribe(feed_url(b, f"{mine},{theirs}", token([mine]))))
    assert forbidden.status == 403 and forbidden.body["error"]["code"] == "forbidden"
    assert asyncio.run(subscribe(feed_url(b, "*", "not-a-token"))).status == 401


def raw_request(bridge, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=5) as s:
        s.sendall(request)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_the_dashboard_page_and_its_files_are_served_beside_the_websocket(bridge):
    status, body, content_type = http_get(bridge.http_url + "/")
    assert status == 200 and content_type.startswith("text/html") and b"/static/app.js" in body
    with urllib.request.urlopen(bridge.http_url + "/") as page:
        csp = page.headers["Content-Security-Policy"]
        etag = page.headers["ETag"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    status, body, content_type = http_get(bridge.http_url + "/static/progress-client.js")
    assert status == 200 and content_type.startswith("text/javascript") and b"export class ProgressClient" in body
    revalidated = raw_request(bridge, f"GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n".encode())
    assert revalidated.startswith(b"HTTP/1.1 304"), revalidated[:80]
    for path in ["/static/..%2Fschemas%2Fenvelope.schema.json", "/static/.hidden", "/static/tests", "/static/nope.js", "/static/%00"]:
        assert http_get(bridge.http_url + path)[0] == 404, path
    # The same path still upgrades to a subscription.
    async def subscribed():
        async with websockets.connect(f"{bridge.ws_url}/?job_id=job_page_check&token=t") as ws:
            return [assert_outbound(json.loads(await ws.recv()))["type"] for _ in range(2)]
    assert asyncio.run(subscribed()) == ["connection.ack", "job.snapshot"]


def test_without_a_web_root_the_page_says_so_and_everything_else_works(tmp_path):
    b = Bridge("--web-root", str(tmp_path / "missing"), "--insecure-no-auth").wait_ready()
    try:
        status, body, _ = http_get(b.http_url + "/")
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
        assert http_get(b.http_url + "/api/v1/bulk-jobs")[0] == 200
        assert any("no dashboard page" in line for line in b.lines)
    finally:
        assert b.stop()[0] == 0

"""`bridge-load`, the subscriber load generator operators run against a bridge: against the real binary, with a
snapshot of over 64 KiB, live events while it measures, and the delivery audit it prints as JSON."""
import datetime
import json
import pathlib
import subprocess
import threading
import uuid

import pytest

from conftest import BINARY, assert_alive, http_get, metric, read_frames, wait_for
from monitor import Monitor, event
from test_hostile_clients import raw_upgrade

LOAD_BINARY = str(pathlib.Path(BINARY).with_name("bridge-load"))
BASE = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.timezone.utc)


def now_offset_ms() -> int:
    """`event`'s at_ms for the wall clock now, so that latency = receive time − now."""
    return int((datetime.datetime.now(datetime.timezone.utc) - BASE).total_seconds() * 1000)


def video_count(bridge, job):
    """How many of the job's videos the bridge holds (its REST list's total)."""
    status, body, _ = http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{job}/videos?limit=1")
    return json.loads(body)["total"] if status == 200 else None


# The sockets engine at its default pace (one round of reads per millisecond) and reading at once; the NIO engine.
@pytest.mark.parametrize("engine,read_interval", [("sockets", None), ("sockets", "0"), ("nio", None)])
def test_bridge_load_holds_subscribers_measures_latency_and_misses_nothing(bridge, engine, read_interval):
    job = "job_load_" + uuid.uuid4().hex[:8]
    videos = 600
    monitor = Monitor(bridge.bootstrap)
    start = now_offset_ms()
    monitor.send(job, event(job, "job.state_changed", {"from": None, "to": "pending", "job": {
        "title": "Load job", "total_videos": videos, "processing_deadline_ms": 3_600_000, "priority": "high"}}, start))
    monitor.send(job, event(job, "job.state_changed", {"from": "pending", "to": "running"}, start + 1))
    for i in range(videos):
        monitor.send(job, event(job, "video.created", {"video_id": f"vid_{i:04d}", "row_index": i + 2,
                                                      "title": f"A video with a long enough title, number {i:04d}"}, start + 2))
    monitor.flush()
    assert wait_for(lambda: video_count(bridge, job) == videos, timeout=30), video_count(bridge, job)

    # The snapshot is one frame of over 64 KiB (a 64-bit length): the load client reads it whole.
    sock = raw_upgrade(bridge.port, f"/?job_id={job}&connection_id=big-snapshot")
    frames, _ = read_frames(sock, timeout=10, until=lambda opcode, payload: b'"job.snapshot"' in payload)
    sock.close()
    assert [opcode for opcode, _ in frames] == [1, 1] and len(frames[1][1]) > 1 << 16, \
        [(opcode, len(payload)) for opcode, payload in frames]

    connections = 40
    load = subprocess.Popen(
        [LOAD_BINARY, "--url", bridge.ws_url, "--job-id", job, "--connections", str(connections), "--duration", "10",
         "--drain", "2", "--threads", "2", "--engine", engine, "--json"]
        + (["--read-interval-ms", read_interval] if read_interval is not None else []),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = []
    measuring = threading.Event()

    def read_progress():
        for line in load.stderr:
            progress.append(line)
            if "measuring" in line:
                measuring.set()
    threading.Thread(target=read_progress, daemon=True).start()

    assert measuring.wait(30), "".join(progress)
    updates = 30
    # All at once, well inside the window (10 s): the window's counts must not depend on how fast this machine is.
    for n in range(updates):
        monitor.send(job, event(job, "video.updated", {"video_id": f"vid_{n:04d}", "state": "processing",
                                                      "progress_percent": 40, "stage": "render", "attempt": 1},
                                now_offset_ms()))
    monitor.flush()
    stdout, _ = load.communicate(timeout=60)
    assert load.returncode == 0, "".join(progress[-5:])
    report = json.loads(stdout)

    assert report["connections_connected"] == connections and report["connections_failed"] == 0, report
    # Every subscriber got every update (video.updated is never conflated), and the audit found nothing missing.
    assert report["never_conflated_received"] >= connections * updates, report
    assert report["never_conflated_missing"] == 0 and report["connections_with_losses"] == 0, report
    assert report["messages"] >= connections * updates and report["unreadable_messages"] == 0, report
    assert report["closes_by_code"] == {}, report
    latency = report["latency_ms"]
    assert latency["samples"] >= connections * updates and 0 <= latency["p50"] < 5000, latency
    assert_alive(bridge)
    assert wait_for(lambda: metric(bridge, "progress_bridge_websocket_connections") == 0, timeout=10), \
        "the load client's connections were not closed"

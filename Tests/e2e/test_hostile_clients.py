"""Hostile and slow subscribers: big frames, floods, too many connections, slow readers, garbage."""
import asyncio
import base64
import json
import os
import socket
import time
import uuid

import pytest
import websockets

from conftest import (Bridge, assert_gauges_back, assert_outbound, baseline_gauges, http_get, job_state, metric, read_frames,
                      text_messages, wait_for)
from monitor import Monitor, a_job, event


@pytest.fixture(scope="module")
def strict():
    b = Bridge("--no-demo-monitor", "--client-message-rate", "5", "--send-queue", "64").wait_ready()
    yield b
    assert b.stop()[0] == 0


async def closed_code(ws, timeout=10):
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.exceptions.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def test_an_oversized_frame_is_refused_with_1009(strict):
    baseline = baseline_gauges(strict)

    async def scenario():
        async with websockets.connect(f"{strict.ws_url}/?job_id=job_big", max_size=None) as ws:
            await ws.recv()
            await ws.send("x" * (70 * 1024))
            return await closed_code(ws)
    assert asyncio.run(scenario()) == 1009
    assert_gauges_back(strict, baseline)


def test_a_flooding_client_is_closed_with_1008(strict):
    baseline = baseline_gauges(strict)

    async def scenario():
        async with websockets.connect(f"{strict.ws_url}/?job_id=job_flood") as ws:
            try:
                for _ in range(200):
                    await ws.send(json.dumps({"type": "ping"}))
                await closed_code(ws)
            except websockets.exceptions.ConnectionClosed:
                pass
            await ws.wait_closed()
            return ws.close_code
    assert asyncio.run(scenario()) == 1008
    assert_gauges_back(strict, baseline)


def test_connections_per_address_are_capped_with_1013_and_others_keep_working():
    capped = Bridge("--no-demo-monitor", "--max-connections-per-ip", "3").wait_ready()
    try:
        _connections_are_capped(capped)
    finally:
        assert capped.stop()[0] == 0


def _connections_are_capped(strict):
    baseline = baseline_gauges(strict)

    async def scenario():
        held = [await websockets.connect(f"{strict.ws_url}/?job_id=job_many") for _ in range(3)]
        try:
            async with websockets.connect(f"{strict.ws_url}/?job_id=job_many") as extra:
                code = await closed_code(extra)
            await held[0].send(json.dumps({"type": "ping"}))
            seen = []
            while not seen or seen[-1]["type"] != "pong":
                seen.append(assert_outbound(json.loads(await asyncio.wait_for(held[0].recv(), 5))))
            return code
        finally:
            for ws in held:
                await ws.close()
    assert asyncio.run(scenario()) == 1013
    status, body, _ = http_get(strict.admin_url + "/metrics")
    assert "progress_bridge_websocket_connections_refused_total 1" in body.decode()
    assert_gauges_back(strict, baseline)


def raw_upgrade(port, path, receive_buffer=None):
    s = socket.socket()
    if receive_buffer:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += s.recv(1)
    assert b" 101 " in response.split(b"\r\n")[0], response
    return s


def test_a_reader_that_stops_reading_is_cut_with_4001_and_can_resume(strict):
    baseline = baseline_gauges(strict)
    job = "job_slow_" + uuid.uuid4().hex[:6]
    s = raw_upgrade(strict.port, f"/?job_id={job}", receive_buffer=2048)
    monitor = Monitor(strict.bootstrap)
    # Big error messages (the schema allows 4,096 bytes) to get past the kernel's socket buffers (4 MiB here).
    message = "m" * 4000
    for i in range(1200):
        monitor.send(job, event(job, "video.failed", {"video_id": f"v{i}", "retryable": False, "error": {"code": "E", "message": message}}, i))
    monitor.flush()
    overflowed = wait_for(lambda: metric(strict, "progress_bridge_send_queue_overflows_total") == 1, timeout=20)
    s.close()
    assert overflowed, "the reader that stopped reading must be cut off"

    assert wait_for(lambda: (job_state(strict, job) or {}).get("events_applied") == 1200, timeout=30)

    async def resume():
        async with websockets.connect(f"{strict.ws_url}/?job_id={job}&last_seq=1190", max_size=None) as ws:
            seen = [assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), 10))) for _ in range(12)]
            return seen
    seen = asyncio.run(resume())
    assert [m["seq"] for m in seen if m["type"] == "video.failed"] == list(range(1191, 1201))
    assert_gauges_back(strict, baseline)


def test_a_reader_that_pauses_gets_every_message_in_order_once_it_reads_again():
    """Past what the socket takes, the bridge's direct writes are taken in part or not
    at all; the event loop must finish each of them, with the queued ones behind, before anything else goes out."""
    roomy = Bridge("--no-demo-monitor", "--send-queue-bytes", str(16 << 20), "--send-queue", "4096").wait_ready()
    try:
        baseline = baseline_gauges(roomy)
        job = "job_pause_" + uuid.uuid4().hex[:6]
        s = raw_upgrade(roomy.port, f"/?job_id={job}", receive_buffer=2048)
        monitor = Monitor(roomy.bootstrap)
        message = "m" * 4000
        # In rounds of 50 (~0.2 MiB of frames), each applied before the next, until the socket refused a write — then
        # one round more, to queue behind it. At most 950: the mock keeps ~4 MiB a partition (of 1,500 of these it
        # kept the last 995), and the socket took ~2.5 MiB here before it refused.
        count = 0
        refused_at = None
        while count < 950 and (refused_at is None or count < refused_at + 50):
            for i in range(count, count + 50):
                monitor.send(job, event(job, "video.failed", {"video_id": f"v{i}", "retryable": False, "error": {"code": "E", "message": message}}, i))
            monitor.flush()
            count += 50
            assert wait_for(lambda: (job_state(roomy, job) or {}).get("events_applied") == count, timeout=30), job_state(roomy, job)
            if refused_at is None and metric(roomy, "progress_bridge_socket_writes_unfinished_total") >= 1:
                refused_at = count
        assert refused_at is not None, f"the socket took all {count} messages: the test did not reach what it tests"
        frames, ended = read_frames(s, timeout=60, until=lambda opcode, payload: b'"v%d"' % (count - 1) in payload)
        s.close()
        assert ended == "until", ended
        seqs = [m["seq"] for m in text_messages(frames) if m["type"] == "video.failed"]
        assert seqs == list(range(1, count + 1)), (len(seqs), seqs[:3], seqs[-3:])
        assert metric(roomy, "progress_bridge_send_queue_overflows_total") == 0
        assert_gauges_back(roomy, baseline)
    finally:
        assert roomy.stop()[0] == 0


def test_garbage_after_the_handshake_closes_only_that_connection(strict):
    baseline = baseline_gauges(strict)
    s = raw_upgrade(strict.port, "/?job_id=job_garbage")
    s.sendall(b"\xff\xff\xff\xff\xff\xff\xff\xff" * 8)
    s.settimeout(10)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    status, _, _ = http_get(strict.admin_url + "/healthz")
    assert status == 200

    async def still_serving():
        async with websockets.connect(f"{strict.ws_url}/?job_id=job_after") as ws:
            return assert_outbound(json.loads(await ws.recv()))["type"]
    assert asyncio.run(still_serving()) == "connection.ack"
    assert_gauges_back(strict, baseline)

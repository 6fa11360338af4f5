"""Adversarial end to end: hostile WebSocket clients, hostile HTTP clients, hostile events, hostile brokers.

Every hostile case checks that the bridge (a) is still alive, (b) still serves a well-behaved subscriber of another
job with the right numbers, and (c) gives back what the hostile client held: the connection, limiter, send-queue and
HTTP-connection gauges return to their values from before the hostile action.
"""
import asyncio
import contextlib
import datetime
import hashlib
import json
import math
import socket
import time
import uuid
import zlib

import pytest
import websockets

from conftest import (Bridge, abort, assert_alive, assert_gauges_back, assert_serves, baseline_gauges, frame_close_code, assert_outbound,
                      gauges, http_get, job_state, metric, metric_sample, publish_reference_job, read_dead_letters,
                      read_frames, receive_until, text_messages, wait_for, ws_frame)
from monitor import Monitor, a_job, event
from test_hostile_clients import closed_code, raw_upgrade

MAX_SAFE = 9007199254740991  # 2^53 - 1

pytestmark = pytest.mark.usefixtures("bridge_logs_on_failure")


@contextlib.contextmanager
def survives(bridge, reference_job, token=None):
    """Wraps a hostile action: the baseline gauges before it; after it, alive, still serving, gauges back."""
    baseline = baseline_gauges(bridge)
    yield baseline
    assert_alive(bridge)
    assert_serves(bridge, reference_job, token=token)
    assert_gauges_back(bridge, baseline)


def strict_json(raw):
    """Parses JSON, refusing NaN and Infinity (no JSON consumer could read them)."""
    def refuse(constant):
        raise AssertionError(f"non-JSON number {constant} in {raw[:300]!r}")
    return json.loads(raw, parse_constant=refuse)


async def receive(ws, count, timeout=10):
    return [assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), timeout))) for _ in range(count)]




def connect(bridge, job, headers=None, **query):
    params = "&".join(f"{k}={v}" for k, v in {"job_id": job, "connection_id": "conn_" + uuid.uuid4().hex[:6], **query}.items())
    return websockets.connect(f"{bridge.ws_url}/?{params}", additional_headers=headers or {}, ping_interval=None,
                              max_size=None, open_timeout=10)


def assert_snapshot_of_reference(snapshot):
    assert snapshot["type"] == "job.snapshot", snapshot
    job = snapshot["data"]["job"]
    assert (job["state"], job["total_videos"], job["completed"], job["failed"]) == ("completed", 3, 2, 1), job


def upgrade_refusal(bridge, query):
    """(HTTP status, JSON body) of an upgrade the bridge refuses; fails when it upgrades."""
    async def attempt():
        try:
            async with websockets.connect(f"{bridge.ws_url}/?{query}", open_timeout=10):
                return None
        except websockets.exceptions.InvalidStatus as refused:
            return refused.response.status_code, refused.response.body
    outcome = asyncio.run(attempt())
    assert outcome is not None, f"{query} was upgraded; it must be refused before the upgrade"
    status, body = outcome
    return status, strict_json(body)


# --- Bridges -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ws_bridge():
    """Default delivery limits, except at most 3 WebSockets per address (so leaked slots show as refusals)."""
    # Retention runs on the partition's stream time: some tests send events stamped now, days after the fixed times
    # of the reference job, which a day's retention would then forget.
    b = Bridge("--no-demo-monitor", "--max-connections-per-ip", "3", "--finished-job-retention", "2592000").wait_ready()
    try:
        yield b, publish_reference_job(b)
    finally:
        assert b.stop()[0] == 0, b.exit_report(30)


@pytest.fixture(scope="module")
def big_job(ws_bridge):
    """A job with 400 failed videos whose error messages are ~4 KB: every snapshot of it is ~1.7 MB, and its history
    (over 1 MiB) no longer reaches back to seq 1, so `resume` with last_seq 0 answers with a whole snapshot."""
    bridge, _ = ws_bridge
    job = "job_big_" + uuid.uuid4().hex[:6]
    monitor = Monitor(bridge.bootstrap)
    monitor.send(job, event(job, "job.state_changed", {"from": None, "to": "running", "job": {"total_videos": 400}}, 0))
    for i in range(400):
        monitor.send(job, event(job, "video.failed", {"video_id": f"vid_{i:04d}", "retryable": False,
                                                      "error": {"code": "E", "message": "m" * 4000}}, 1000 + i))
    monitor.flush()
    assert wait_for(lambda: (job_state(bridge, job) or {}).get("failed") == 400, timeout=30), job_state(bridge, job)
    return job


@pytest.fixture(scope="module")
def ingest_bridge():
    """At most 5 videos per job, dead letters of at most 4,096 bytes."""
    # (A month's retention: see ws_bridge.)
    b = Bridge("--no-demo-monitor", "--max-videos-per-job", "5", "--dlq-max-bytes", "4096", "--finished-job-retention", "2592000").wait_ready()
    try:
        yield b, publish_reference_job(b)
    finally:
        assert b.stop()[0] == 0, b.exit_report(30)


# --- last_seq and resume -----------------------------------------------------------------------------------------

def test_last_seq_outside_the_safe_range_in_the_url_is_refused_with_400_before_the_upgrade(ws_bridge):
    bridge, reference = ws_bridge
    with survives(bridge, reference):
        for value in [MAX_SAFE + 1, 2**63 - 1, 2**63, 2**64, 10**30, -1, -(2**63) - 1]:
            status, body = upgrade_refusal(bridge, f"job_id={reference}&last_seq={value}")
            assert status == 400, (value, status, body)
            assert isinstance(body.get("error"), dict) and body["error"].get("code") and body["error"].get("message"), body

        async def at_the_boundary():
            # The largest allowed value is accepted: ahead of the job, so an error and a fresh snapshot, never silence.
            async with connect(bridge, reference, last_seq=MAX_SAFE) as ws:
                return await receive_until(ws, lambda m: m["type"] == "job.snapshot")
        messages = asyncio.run(at_the_boundary())
        assert messages[0]["type"] == "connection.ack" and messages[0]["seq"] == 0
        assert_snapshot_of_reference(messages[-1])
        errors = [m for m in messages if m["type"] == "error"]
        assert all(m["seq"] == 0 and m["data"]["code"] == "resume_unavailable" for m in errors), errors


def test_resume_with_last_seq_outside_the_safe_range_is_an_invalid_message(ws_bridge):
    bridge, reference = ws_bridge
    with survives(bridge, reference):
        async def scenario():
            async with connect(bridge, reference) as ws:
                ack, snapshot = await receive(ws, 2)
                answers = []
                for raw in [MAX_SAFE + 1, 2**63 - 1, 2**63, 2**64, 10**30, -1, 1.5, 1e300, "3", None, [1], {"n": 1}]:
                    await ws.send(json.dumps({"type": "resume", "last_seq": raw}))
                    answers.append((raw, assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), 10)))))
                await ws.send(json.dumps({"type": "ping", "id": "still-there"}))
                pong = assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), 10)))
                # A valid resume still works on the same connection.
                await ws.send(json.dumps({"type": "resume", "last_seq": snapshot["seq"] - 1}))
                resumed = await receive(ws, 2)
                return snapshot, answers, pong, resumed
        snapshot, answers, pong, resumed = asyncio.run(scenario())
        for raw, answer in answers:
            assert answer["type"] == "error" and answer["seq"] == 0 and answer["data"]["code"] == "invalid_message", (raw, answer)
        assert pong["type"] == "pong" and pong["data"]["id"] == "still-there"
        assert resumed[0]["type"] == "resume.ok" and resumed[1]["seq"] == snapshot["seq"], resumed


def test_resume_beyond_the_jobs_seq_gets_an_error_and_a_fresh_snapshot_not_silence(ws_bridge):
    bridge, reference = ws_bridge
    with survives(bridge, reference):
        async def scenario():
            async with connect(bridge, reference) as ws:
                _, snapshot = await receive(ws, 2)
                answers = []
                for last_seq in [snapshot["seq"] + 1, MAX_SAFE]:
                    await ws.send(json.dumps({"type": "resume", "last_seq": last_seq}))
                    answers.append(await receive(ws, 2))
                return snapshot, answers
        snapshot, answers = asyncio.run(scenario())
        for error, fresh in answers:
            assert error["type"] == "error" and error["seq"] == 0 and error["data"]["code"] == "resume_unavailable", error
            assert_snapshot_of_reference(fresh)
            assert fresh["seq"] == snapshot["seq"]


def test_resume_ok_has_seq_0_and_is_followed_by_the_replay_in_order(ws_bridge):
    bridge, reference = ws_bridge
    with survives(bridge, reference):
        async def scenario():
            async with connect(bridge, reference) as ws:
                _, snapshot = await receive(ws, 2)
                current = snapshot["seq"]
                await ws.send(json.dumps({"type": "resume", "last_seq": current - 4}))
                by_message = await receive(ws, 5)
            async with connect(bridge, reference, last_seq=current - 2) as ws:
                by_url = await receive(ws, 4)
            return current, by_message, by_url
        current, by_message, by_url = asyncio.run(scenario())
        ok = by_message[0]
        assert ok["type"] == "resume.ok" and ok["seq"] == 0, ok
        assert (ok["data"]["from_seq"], ok["data"]["to_seq"]) == (current - 3, current), ok
        assert [m["seq"] for m in by_message[1:]] == [current - 3, current - 2, current - 1, current]
        assert by_message[-1]["type"] == "job.completed"
        assert [m["type"] for m in by_url[:2]] == ["connection.ack", "resume.ok"], by_url
        assert by_url[1]["seq"] == 0 and (by_url[1]["data"]["from_seq"], by_url[1]["data"]["to_seq"]) == (current - 1, current)
        assert [m["seq"] for m in by_url[2:]] == [current - 1, current]


def test_resumes_are_rate_limited_to_bursts_of_three(ws_bridge):
    bridge, reference = ws_bridge
    before = metric(bridge, "progress_bridge_resumes_rate_limited_total")
    with survives(bridge, reference):
        async def scenario():
            async with connect(bridge, reference) as ws:
                _, snapshot = await receive(ws, 2)
                for _ in range(5):
                    await ws.send(json.dumps({"type": "resume", "last_seq": snapshot["seq"] - 1}))
                # Three resumes answered (resume.ok + one replayed message each), two refused.
                answers = await receive(ws, 8)
                await asyncio.sleep(1.2)
                await ws.send(json.dumps({"type": "resume", "last_seq": snapshot["seq"] - 1}))
                later = await receive(ws, 2)
                return answers, later
        answers, later = asyncio.run(scenario())
        kinds = [m["type"] if m["type"] != "error" else m["data"]["code"] for m in answers]
        assert kinds.count("resume.ok") == 3 and kinds.count("resume_rate_limited") == 2, kinds
        assert all(m["seq"] == 0 for m in answers if m["type"] in ("resume.ok", "error"))
        assert later[0]["type"] == "resume.ok", "a token comes back after a second"
    assert metric(bridge, "progress_bridge_resumes_rate_limited_total") == before + 2


def test_ping_ids_are_echoed_only_up_to_128_bytes_of_json(ws_bridge):
    bridge, reference = ws_bridge
    with survives(bridge, reference):
        async def scenario():
            async with connect(bridge, reference) as ws:
                await receive(ws, 2)
                answers = []
                for identifier in ["a" * 126, 12345, 1.5, "a" * 127, "b" * 60000, {"nested": 1}, [1, 2]]:
                    await ws.send(json.dumps({"type": "ping", "id": identifier}))
                    answers.append((identifier, assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), 10)))))
                return answers
        answers = asyncio.run(scenario())
        for identifier, answer in answers[:3]:
            assert answer["type"] == "pong" and answer["seq"] == 0 and answer["data"]["id"] == identifier, answer
        for identifier, answer in answers[3:]:
            assert answer["type"] == "error" and answer["seq"] == 0 and answer["data"]["code"] == "invalid_message", answer
            assert len(json.dumps(answer)) < 1024, "an invalid id is never echoed back"


# --- Hostile WebSocket clients -------------------------------------------------------------------------------------

INVALID_UTF8 = [
    ws_frame(1, b'{"type":"ping","id":"\xff\xfe"}'),                                      # bytes never valid
    ws_frame(1, b'{"type":"ping","id":"\xc0\xaf"}'),                                      # overlong encoding
    ws_frame(1, b'{"type":"ping","id":"\xed\xa0\x80"}'),                                  # an encoded surrogate
    ws_frame(1, b'{"type":"resume","last_seq":1,"x":"\xe2\x82', fin=False) + ws_frame(0, b'"}'),  # cut mid character
    ws_frame(1, b'\x80\x80\x80\x80'),                                                     # lone continuation bytes
]


def test_five_clients_sending_invalid_utf8_release_everything_and_others_still_get_in(ws_bridge):
    bridge, reference = ws_bridge
    with survives(bridge, reference) as baseline:
        for i, garbage in enumerate(INVALID_UTF8):
            s = raw_upgrade(bridge.port, f"/?job_id={reference}&connection_id=conn_utf8_{i}")
            frames, how = read_frames(s, 10, until=lambda opcode, payload: b"job.snapshot" in payload)
            assert how == "until" and text_messages(frames)[0]["type"] == "connection.ack", \
                f"client {i} was not admitted ({how}, close {frame_close_code(frames)}): a slot leaked"
            s.sendall(garbage * 3)
            frames, how = read_frames(s, 5)
            # RFC 6455 §8.1: text that is not UTF-8 fails the connection with 1007; nothing of it is echoed.
            assert frame_close_code(frames) == 1007, (how, frame_close_code(frames))
            assert not any(b"pong" in payload for _, payload in frames), "invalid text must not be answered"
            if i % 2:
                abort(s)
            else:
                s.close()
            # The slot comes back, so with a cap of three per address the fourth and fifth clients are admitted too.
            assert wait_for(lambda: gauges(bridge)["progress_bridge_websocket_limiter_slots"]
                            == baseline["progress_bridge_websocket_limiter_slots"], timeout=15), gauges(bridge)

        async def three_normal_clients():
            sockets = [await connect(bridge, reference) for _ in range(3)]
            try:
                return [await receive(ws, 2) for ws in sockets]
            finally:
                for ws in sockets:
                    await ws.close()
        for ack, snapshot in asyncio.run(three_normal_clients()):
            assert ack["type"] == "connection.ack"
            assert_snapshot_of_reference(snapshot)


PROTOCOL_ERRORS = {
    "unmasked client frame": ws_frame(1, b'{"type":"ping"}', mask=False),
    "reserved data opcode": ws_frame(3, b"abc"),
    "reserved control opcode": ws_frame(0xB, b"abc"),
    "reserved bits without an extension": ws_frame(1, b'{"type":"ping"}', rsv=4),
    "continuation without a start": ws_frame(0, b'{"type":"ping"}'),
    "fragmented control frame": ws_frame(9, b"ping", fin=False),
    "control frame over 125 bytes": ws_frame(9, b"p" * 200),
    "a new message inside a fragmented one": ws_frame(1, b'{"type":', fin=False) + ws_frame(1, b'"ping"}'),
}


@pytest.mark.parametrize("name", PROTOCOL_ERRORS)
def test_protocol_errors_end_only_that_session(ws_bridge, name):
    bridge, reference = ws_bridge
    with survives(bridge, reference):
        s = raw_upgrade(bridge.port, f"/?job_id={reference}")
        frames, how = read_frames(s, 10, until=lambda opcode, payload: b"job.snapshot" in payload)
        assert how == "until", how
        s.sendall(PROTOCOL_ERRORS[name])
        frames, how = read_frames(s, 1.5)
        # RFC 6455 §7.1.7: the connection is failed with a close frame, 1002 (protocol error).
        assert (how, frame_close_code(frames)) == ("close", 1002), (how, frames[-1:])
        s.close()


def test_a_client_that_shuts_its_side_without_a_close_frame_is_let_go_at_once(ws_bridge):
    bridge, reference = ws_bridge
    with survives(bridge, reference) as baseline:
        s = raw_upgrade(bridge.port, f"/?job_id={reference}")
        read_frames(s, 10, until=lambda opcode, payload: b"job.snapshot" in payload)
        assert gauges(bridge)["progress_bridge_websocket_connections"] == baseline["progress_bridge_websocket_connections"] + 1
        s.shutdown(socket.SHUT_WR)  # TCP half-close: the client will send nothing more, not even a close frame
        frames, how = read_frames(s, 5)
        assert how in ("eof", "reset"), f"the bridge must close a connection whose client shut its side ({how})"
        assert wait_for(lambda: gauges(bridge)["progress_bridge_websocket_connections"]
                        == baseline["progress_bridge_websocket_connections"], timeout=5), gauges(bridge)
        s.close()


def test_a_flood_of_pongs_counts_against_the_message_rate(ws_bridge):
    bridge, reference = ws_bridge
    with survives(bridge, reference):
        s = raw_upgrade(bridge.port, f"/?job_id={reference}")
        read_frames(s, 10, until=lambda opcode, payload: b"job.snapshot" in payload)
        try:
            s.sendall(b"".join(ws_frame(0xA, b"unasked") for _ in range(200)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        frames, how = read_frames(s, 5)
        assert (how, frame_close_code(frames)) == ("close", 1008), (how, frames[-1:])
        s.close()


@pytest.mark.parametrize("shape", ["three 40 KiB fragments", "a thousand 100-byte fragments"])
def test_an_oversized_fragmented_message_ends_the_session(ws_bridge, shape):
    bridge, reference = ws_bridge
    with survives(bridge, reference) as baseline:
        if shape.startswith("three"):
            data = ws_frame(1, b"a" * 40000, fin=False) + ws_frame(0, b"a" * 40000, fin=False) + ws_frame(0, b"a" * 40000)
        else:
            data = ws_frame(1, b"a" * 100, fin=False) + b"".join(ws_frame(0, b"a" * 100, fin=False) for _ in range(998)) \
                + ws_frame(0, b"a" * 100)
        s = raw_upgrade(bridge.port, f"/?job_id={reference}")
        read_frames(s, 10, until=lambda opcode, payload: b"job.snapshot" in payload)
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        frames, how = read_frames(s, 10)
        assert how in ("close", "eof", "reset"), f"the bridge must end a session whose message exceeds 64 KiB ({how})"
        if how == "close":
            # A thousand fragments are a thousand frames: the client frame rate (fragments count) ends it first.
            assert frame_close_code(frames) == (1009 if shape.startswith("three") else 1008), frame_close_code(frames)
        # Released even while the client keeps its end open.
        assert wait_for(lambda: gauges(bridge)["progress_bridge_websocket_connections"]
                        == baseline["progress_bridge_websocket_connections"], timeout=15), gauges(bridge)
        s.close()


def test_abrupt_resets_end_the_session_also_mid_write(ws_bridge, big_job):
    bridge, reference = ws_bridge
    with survives(bridge, reference):
        idle = raw_upgrade(bridge.port, f"/?job_id={reference}")
        read_frames(idle, 10, until=lambda opcode, payload: b"job.snapshot" in payload)
        abort(idle)
        # Reset while the bridge is writing megabytes of snapshots to a client that does not read.
        busy = raw_upgrade(bridge.port, f"/?job_id={big_job}", receive_buffer=2048)
        for _ in range(3):
            busy.sendall(ws_frame(1, json.dumps({"type": "resume", "last_seq": 0}).encode()))
        time.sleep(0.5)
        abort(busy)
        half = raw_upgrade(bridge.port, f"/?job_id={reference}")
        half.sendall(ws_frame(1, b'{"type":"ping","id":"' + b"x" * 2000, fin=False)[:1500])  # reset mid-frame
        abort(half)


def test_a_client_that_stops_reading_is_cut_with_4001_and_its_queue_is_freed(ws_bridge, big_job):
    bridge, reference = ws_bridge
    overflows = metric(bridge, "progress_bridge_send_queue_overflows_total")
    with survives(bridge, reference):
        s = raw_upgrade(bridge.port, f"/?job_id={big_job}&connection_id=conn_stalled", receive_buffer=2048)
        s.settimeout(5)
        ping = ws_frame(1, json.dumps({"type": "ping", "id": "i" * 126}).encode())  # the largest id: 128 bytes of JSON
        resume = ws_frame(1, json.dumps({"type": "resume", "last_seq": 0}).encode())
        deadline = time.time() + 20
        sent = 0
        cut = False
        peak = 0.0
        while time.time() < deadline and not cut:
            # ~10 messages a second: under the client message rate (20/s), with the resume limit's burst then 1/s.
            s.sendall(resume if sent % 10 == 0 or sent < 3 else ping)
            sent += 1
            time.sleep(0.1)
            cut = metric(bridge, "progress_bridge_send_queue_overflows_total") > overflows
            peak = max(peak, gauges(bridge)["progress_bridge_send_queue_bytes"])
        assert cut, f"a client that stops reading must be cut off (sent {sent} messages)"
        # Now read what the kernel still holds: the close frame at the end says why.
        frames, how = read_frames(s, 30)
        s.close()
        assert frame_close_code(frames) == 4001, (how, frame_close_code(frames), len(frames))
        # Bounded by --send-queue-bytes (1 MiB), plus the one message an empty queue always takes (a snapshot, whose
        # videos are capped at 512 KiB).
        assert peak <= 1048576 + 600_000, f"send queue bytes {peak} beyond the per-subscriber bound"
    assert metric(bridge, "progress_bridge_send_queue_overflows_total") == overflows + 1


def test_a_client_that_never_reads_again_is_disconnected_even_while_a_write_is_blocked(ws_bridge, big_job):
    # The bridge's writer blocks once the client's TCP window is closed; the 4001 close frame can never go out. The
    # session must still end (its slot, subscription and gauges freed) without the client reading a byte.
    bridge, reference = ws_bridge
    with survives(bridge, reference) as baseline:
        s = raw_upgrade(bridge.port, f"/?job_id={big_job}&connection_id=conn_deaf", receive_buffer=2048)
        resume = ws_frame(1, json.dumps({"type": "resume", "last_seq": 0}).encode())
        started = time.time()
        ended = False
        while time.time() - started < 30 and not ended:
            try:
                s.sendall(resume)
            except OSError:
                break  # the bridge closed the connection
            time.sleep(1.0)  # the resume rate limit: one a second
            ended = gauges(bridge)["progress_bridge_websocket_connections"] == baseline["progress_bridge_websocket_connections"]
        assert wait_for(lambda: gauges(bridge)["progress_bridge_websocket_connections"]
                        == baseline["progress_bridge_websocket_connections"], timeout=15), \
            f"a session whose client never reads must end ({gauges(bridge)})"
        s.close()


CLOSING_WHILE_NOT_READING = {
    "its own close frame": ws_frame(8, b"\x03\xe8"),
    "a protocol error (an unmasked frame)": ws_frame(1, b"{}", mask=False),
    "a flood past the rate": b"".join(ws_frame(9, b"p") for _ in range(100)),
}


@pytest.mark.parametrize("how", CLOSING_WHILE_NOT_READING)
def test_a_client_that_stops_reading_then_starts_the_close_cannot_hold_the_connection(ws_bridge, big_job, how):
    # The bridge's close frame (its answer, or its 1002 or 1008) queues behind a snapshot the client never reads: it can
    # never leave, and the handshake can never finish. The connection must still end, without the client reading a byte.
    bridge, reference = ws_bridge
    with survives(bridge, reference) as baseline:
        s = raw_upgrade(bridge.port, f"/?job_id={big_job}&connection_id=conn_closing_deaf", receive_buffer=2048)
        # Snapshots (~1.7 MB each, one resume a second) until the kernel's buffers are full and one waits in the send
        # queue: from then on, nothing the bridge writes can leave. (One more would overflow the queue: 4001.)
        resume = ws_frame(1, json.dumps({"type": "resume", "last_seq": 0}).encode())
        stuck = False
        for _ in range(20):
            s.sendall(resume)
            time.sleep(1.0)
            stuck = gauges(bridge)["progress_bridge_send_queue_bytes"] > baseline["progress_bridge_send_queue_bytes"]
            if stuck:
                break
        assert stuck, "the snapshots never filled the socket"
        s.sendall(CLOSING_WHILE_NOT_READING[how])
        assert wait_for(lambda: gauges(bridge)["progress_bridge_websocket_connections"]
                        == baseline["progress_bridge_websocket_connections"], timeout=10), \
            f"{how}: a closing connection whose client does not read must end ({gauges(bridge)})"
        s.close()


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(ws_bridge):
    bridge, reference = ws_bridge
    refused = metric(bridge, "progress_bridge_websocket_connections_refused_total")
    with survives(bridge, reference):
        async def scenario():
            held = []
            try:
                for claimed in ["192.0.2.1", "198.51.100.7", "192.0.2.2"]:
                    ws = await connect(bridge, reference, headers={"X-Forwarded-For": claimed})
                    held.append(ws)
                    assert (await receive(ws, 1))[0]["type"] == "connection.ack"
                # All three count as 127.0.0.1, whatever they claim: the fourth is over the cap of three.
                async with connect(bridge, reference, headers={"X-Forwarded-For": "198.51.100.9",
                                                               "Forwarded": "for=198.51.100.10"}) as extra:
                    return await closed_code(extra)
            finally:
                for ws in held:
                    await ws.close()
        assert asyncio.run(scenario()) == 1013
    assert metric(bridge, "progress_bridge_websocket_connections_refused_total") == refused + 1


def test_a_trusted_proxy_names_the_client_for_per_address_limits():
    bridge = Bridge("--no-demo-monitor", "--trusted-proxy", "127.0.0.0/8", "--max-connections-per-ip", "2").wait_ready()
    try:
        reference = publish_reference_job(bridge)
        with survives(bridge, reference):
            async def outcome(headers):
                """'open' (held) or the close code."""
                ws = await connect(bridge, reference, headers=headers)
                try:
                    first = assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), 10)))
                    return ws, "open" if first["type"] == "connection.ack" else first["type"]
                except websockets.exceptions.ConnectionClosed as closed:
                    return ws, closed.rcvd.code if closed.rcvd else None

            async def scenario():
                held, results = [], []
                try:
                    for label, headers in [
                        ("xff 1", {"X-Forwarded-For": "192.0.2.1"}),
                        ("forwarded 1", {"Forwarded": 'for="192.0.2.1:4711";proto=https'}),
                        ("xff 1 again", {"X-Forwarded-For": "192.0.2.1"}),                   # third from 192.0.2.1
                        ("spoofed left", {"X-Forwarded-For": "198.51.100.7, 192.0.2.1"}),   # right-most untrusted wins
                        ("through two proxies", {"X-Forwarded-For": "192.0.2.1, 127.0.0.5"}),
                        ("other client", {"X-Forwarded-For": "198.51.100.7"}),
                        ("other client 2", {"Forwarded": "for=198.51.100.7"}),
                        ("no header", {}),                                                  # the proxy itself
                    ]:
                        ws, result = await outcome(headers)
                        results.append((label, result))
                        if result == "open":
                            held.append(ws)
                        else:
                            await ws.close()
                    return results
                finally:
                    for ws in held:
                        await ws.close()
            results = dict(asyncio.run(scenario()))
            assert results == {"xff 1": "open", "forwarded 1": "open", "xff 1 again": 1013, "spoofed left": 1013,
                               "through two proxies": 1013, "other client": "open", "other client 2": "open",
                               "no header": "open"}, results
    finally:
        assert bridge.stop()[0] == 0


# --- Hostile HTTP clients --------------------------------------------------------------------------------------------

IDLE_TIMEOUT, HTTP_CAP = 2, 6


@pytest.fixture(scope="module")
def http_bridge():
    b = Bridge("--no-demo-monitor", "--http-idle-timeout", str(IDLE_TIMEOUT), "--max-http-connections", str(HTTP_CAP)).wait_ready()
    try:
        yield b, publish_reference_job(b)
    finally:
        assert b.stop()[0] == 0, b.exit_report(30)


def slowloris(port):
    """A connection that sends part of a request head, then nothing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /api/v1/bulk-jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return s


def kept_alive(port):
    """A connection that made one whole request, read the answer, and stays open (HTTP/1.1 keep-alive)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /api/v1/bulk-jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = s.recv(4096)
        assert chunk, "closed before answering"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    length = int([h.split(b":")[1] for h in answer.split(b"\r\n") if h.lower().startswith(b"content-length:")][0])
    body = answer.split(b"\r\n\r\n", 1)[1]
    while len(body) < length:
        body += s.recv(4096)
    return s


def closed_by_server(s, timeout):
    """Seconds until the server closed `s`, or None when it is still open after `timeout`."""
    started = time.monotonic()
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
    except socket.timeout:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def http_gauge(bridge):
    return gauges(bridge)["progress_bridge_http_connections"]


@contextlib.contextmanager
def opened(*sockets):
    try:
        yield sockets
    finally:
        for s in sockets:
            s.close()


def test_slowloris_partial_headers_are_closed_by_the_idle_timeout(http_bridge):
    bridge, reference = http_bridge
    with survives(bridge, reference) as baseline:
        with opened(*(slowloris(bridge.port) for _ in range(3))) as slow:
            counted = wait_for(lambda: http_gauge(bridge) == baseline["progress_bridge_http_connections"] + 3, timeout=2)
            seen = gauges(bridge)
            closed = [closed_by_server(slow[0], IDLE_TIMEOUT + 4)] + [closed_by_server(s, 1) for s in slow[1:]]
        assert all(c is not None for c in closed), \
            f"connections silent after part of a request head must be closed after --http-idle-timeout {IDLE_TIMEOUT}: {closed}"
        assert closed[0] >= IDLE_TIMEOUT - 1, f"not before the timeout: {closed}"
        assert counted, f"open connections must show in progress_bridge_http_connections: {seen}"


def test_an_idle_keep_alive_connection_is_closed_by_the_idle_timeout(http_bridge):
    bridge, reference = http_bridge
    with survives(bridge, reference) as baseline:
        with opened(kept_alive(bridge.port)) as (idle,):
            assert wait_for(lambda: http_gauge(bridge) == baseline["progress_bridge_http_connections"] + 1, timeout=3), gauges(bridge)
            took = closed_by_server(idle, IDLE_TIMEOUT + 6)
        assert took is not None and IDLE_TIMEOUT - 1 <= took <= IDLE_TIMEOUT + 3, took


def test_a_quiet_websocket_is_not_closed_by_the_http_idle_timeout(http_bridge):
    bridge, reference = http_bridge
    with survives(bridge, reference):
        async def scenario():
            async with connect(bridge, reference) as ws:
                await receive(ws, 2)
                await asyncio.sleep(IDLE_TIMEOUT * 2.5)  # no message either way
                await ws.send(json.dumps({"type": "ping", "id": "quiet"}))
                return assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), 5)))
        pong = asyncio.run(scenario())
        assert pong["type"] == "pong" and pong["data"]["id"] == "quiet"


def test_http_connections_beyond_the_cap_are_closed_at_once(http_bridge):
    bridge, reference = http_bridge
    refused = metric(bridge, "progress_bridge_http_connections_refused_total")
    with survives(bridge, reference) as baseline:
        with opened(*(kept_alive(bridge.port) for _ in range(HTTP_CAP))):
            assert wait_for(lambda: http_gauge(bridge) == baseline["progress_bridge_http_connections"] + HTTP_CAP, timeout=3), \
                gauges(bridge)
            with opened(socket.create_connection(("127.0.0.1", bridge.port), timeout=5)) as (extra,):
                with contextlib.suppress(OSError):
                    extra.sendall(b"GET /api/v1/bulk-jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                took = closed_by_server(extra, 1.5)
            assert took is not None and took < 1.0, f"a connection over the cap of {HTTP_CAP} must be closed at once ({took})"
            assert metric(bridge, "progress_bridge_http_connections_refused_total") == refused + 1
    assert job_state(bridge, reference)["completed"] == 2, "served again once below the cap"


def test_the_http_connection_cap_counts_connections_that_never_finish_a_request():
    # Its own bridge, with a head deadline long enough that the silent connections are still open when counted.
    bridge = Bridge("--no-demo-monitor", "--http-idle-timeout", "30", "--max-http-connections", str(HTTP_CAP)).wait_ready()
    try:
        _the_cap_counts_silent_connections(bridge, publish_reference_job(bridge))
    finally:
        assert bridge.stop()[0] == 0, bridge.exit_report(30)


def _the_cap_counts_silent_connections(bridge, reference):
    refused = metric(bridge, "progress_bridge_http_connections_refused_total")
    with survives(bridge, reference) as baseline:
        silent = [socket.create_connection(("127.0.0.1", bridge.port), timeout=5) for _ in range(HTTP_CAP // 2)]
        with opened(*silent, *(slowloris(bridge.port) for _ in range(HTTP_CAP - len(silent)))):
            assert wait_for(lambda: http_gauge(bridge) == baseline["progress_bridge_http_connections"] + HTTP_CAP, timeout=5), \
                gauges(bridge)
            with opened(socket.create_connection(("127.0.0.1", bridge.port), timeout=5)) as (extra,):
                took = closed_by_server(extra, 1.5)
            assert took is not None and took < 1.0, \
                f"with {HTTP_CAP} connections open (silent or slowloris), one more must be closed at once ({took})"
            assert metric(bridge, "progress_bridge_http_connections_refused_total") == refused + 1


def test_websockets_count_towards_the_http_connection_cap(http_bridge):
    bridge, reference = http_bridge
    with survives(bridge, reference) as baseline:
        async def scenario():
            async with connect(bridge, reference) as ws:
                await receive(ws, 2)
                return wait_for(lambda: http_gauge(bridge) == baseline["progress_bridge_http_connections"] + 1, timeout=3), \
                    gauges(bridge)
        counted, seen = asyncio.run(scenario())
        assert counted, f"--max-http-connections counts WebSockets too (its help says so): {seen}"


def test_sigterm_is_not_held_up_by_a_slowloris_connection():
    bridge = Bridge("--no-demo-monitor").wait_ready()
    with opened(slowloris(bridge.port)):
        code, took = bridge.stop(timeout=10)
    assert code == 0 and took < 10, took


# --- Hostile events -------------------------------------------------------------------------------------------------

def send(bridge, job, *events, key=None, partition=None):
    monitor = Monitor(bridge.bootstrap)
    for e in events:
        monitor.send(key or job, e, partition=partition)
    monitor.flush()


def default_partition(key, partitions=4):
    """The partition confluent-kafka's default partitioner (librdkafka's consistent_random: CRC-32) picks for `key`."""
    return zlib.crc32(key.encode()) % partitions


def dead_letter_reasons(bridge, job, count, timeout=20):
    return [headers.get("x-dlq-reason") for _, headers, _ in read_dead_letters(bridge.bootstrap, job, count, timeout)]


def start(job, total=2, at=0):
    return event(job, "job.state_changed", {"from": None, "to": "running", "job": {"total_videos": total}}, at)


def test_a_count_beyond_2_53_is_dead_lettered_as_a_schema_violation(ingest_bridge):
    bridge, reference = ingest_bridge
    job = "job_big_count_" + uuid.uuid4().hex[:6]
    violations = metric_sample(bridge, "progress_bridge_events_invalid_total", reason="schema_violation")
    with survives(bridge, reference):
        send(bridge, job, start(job), event(job, "job.progress", {"total_videos": 2, "completed": 9223372036854775807, "failed": 0}, 10),
             event(job, "job.progress", {"total_videos": 2, "completed": MAX_SAFE + 1, "failed": 0}, 11),
             event(job, "video.completed", {"video_id": "v1", "processing_ms": 7}, 12))
        assert wait_for(lambda: (job_state(bridge, job) or {}).get("completed") == 1, timeout=15), job_state(bridge, job)
        assert metric_sample(bridge, "progress_bridge_events_invalid_total", reason="schema_violation") == violations + 2
        assert dead_letter_reasons(bridge, job, 2) == ["schema_violation", "schema_violation"]
        state = job_state(bridge, job)
        assert state["events_applied"] == 2 and state["total_videos"] == 2


def test_counts_of_2_53_minus_1_are_applied_without_overflow(ingest_bridge):
    bridge, reference = ingest_bridge
    job = "job_max_counts_" + uuid.uuid4().hex[:6]
    with survives(bridge, reference):
        send(bridge, job, start(job), event(job, "job.progress", {"total_videos": MAX_SAFE, "completed": MAX_SAFE, "failed": MAX_SAFE,
                                                                  "skipped": MAX_SAFE, "processing": MAX_SAFE}, 10))
        assert wait_for(lambda: (job_state(bridge, job) or {}).get("events_applied") == 2, timeout=15), job_state(bridge, job)
        status, body, _ = http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{job}")
        assert status == 200
        state = strict_json(body)
        assert 0 <= state["percent_complete"] <= 100, state
        for name in ("total_videos", "completed", "failed", "pending", "processing", "skipped"):
            assert isinstance(state[name], int) and 0 <= state[name] <= MAX_SAFE, (name, state[name])
        listing = http_get(f"{bridge.http_url}/api/v1/bulk-jobs")
        assert listing[0] == 200 and job in listing[1].decode()
        strict_json(listing[1])

        async def snapshot():
            async with connect(bridge, job) as ws:
                await ws.recv()
                return await asyncio.wait_for(ws.recv(), 10)
        assert strict_json(asyncio.run(snapshot()))["type"] == "job.snapshot"


def test_processing_times_of_2_53_minus_1_keep_the_statistics_finite(ingest_bridge):
    bridge, reference = ingest_bridge
    job = "job_max_ms_" + uuid.uuid4().hex[:6]
    with survives(bridge, reference):
        send(bridge, job, start(job), event(job, "video.completed", {"video_id": "v1", "processing_ms": MAX_SAFE}, 10),
             event(job, "video.completed", {"video_id": "v2", "processing_ms": MAX_SAFE}, 20))
        assert wait_for(lambda: (job_state(bridge, job) or {}).get("completed") == 2, timeout=15), job_state(bridge, job)
        status, body, _ = http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{job}")
        timing = strict_json(body)["processing_time_ms"]
        assert timing["samples"] == 2
        for name in ("mean", "p50", "p95"):
            assert timing[name] is not None and math.isfinite(timing[name]), timing
            assert abs(timing[name] - MAX_SAFE) <= 2, f"{name} of two samples of 2^53-1 must be 2^53-1: {timing}"
        videos = strict_json(http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{job}/videos?sort=processing_ms&order=desc")[1])
        assert [v["processing_ms"] for v in videos["videos"]] == [MAX_SAFE, MAX_SAFE]


def test_videos_beyond_the_per_job_cap_are_dead_lettered_and_the_job_goes_on(ingest_bridge):
    bridge, reference = ingest_bridge
    job = "job_many_videos_" + uuid.uuid4().hex[:6]
    exceeded = metric_sample(bridge, "progress_bridge_events_invalid_total", reason="limit_exceeded")
    with survives(bridge, reference):
        events = [start(job, total=7)] + [event(job, "video.created", {"video_id": f"v{i}"}, 10 + i) for i in range(1, 6)]
        events += [event(job, "video.created", {"video_id": "v6"}, 20),                         # a sixth video
                   event(job, "video.completed", {"video_id": "v7", "processing_ms": 5}, 21),   # a seventh, before its created
                   event(job, "video.completed", {"video_id": "v1", "processing_ms": 5}, 22)]   # a known one: applied
        send(bridge, job, *events)
        assert wait_for(lambda: (job_state(bridge, job) or {}).get("completed") == 1, timeout=15), job_state(bridge, job)
        assert metric_sample(bridge, "progress_bridge_events_invalid_total", reason="limit_exceeded") == exceeded + 2
        assert dead_letter_reasons(bridge, job, 2) == ["limit_exceeded", "limit_exceeded"]
        videos = strict_json(http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{job}/videos?sort=id&limit=100")[1])["videos"]
        assert sorted(v["id"] for v in videos) == ["v1", "v2", "v3", "v4", "v5"]
        assert job_state(bridge, job)["events_applied"] == 7


def test_jobs_beyond_max_jobs_are_dead_lettered_and_the_others_are_unaffected():
    # --max-jobs is shared out over the input partitions (here 4, so 2 each), so that every replica refuses the
    # same jobs; the test's jobs share one partition, not the reference job's.
    bridge = Bridge("--no-demo-monitor", "--max-jobs", "8").wait_ready()
    try:
        reference = publish_reference_job(bridge)
        partition = (default_partition(reference) + 1) % 4
        with survives(bridge, reference):
            second, third, fourth = ("job_cap_" + uuid.uuid4().hex[:6] for _ in range(3))
            send(bridge, second, start(second), partition=partition)
            send(bridge, third, start(third), partition=partition)
            assert wait_for(lambda: job_state(bridge, third) is not None, timeout=15)
            send(bridge, fourth, start(fourth), event(fourth, "video.completed", {"video_id": "v1", "processing_ms": 5}, 10), partition=partition)
            assert dead_letter_reasons(bridge, fourth, 2) == ["limit_exceeded", "limit_exceeded"]
            assert metric_sample(bridge, "progress_bridge_events_invalid_total", reason="limit_exceeded") == 2
            assert job_state(bridge, fourth) is None
            send(bridge, second, event(second, "video.completed", {"video_id": "v1", "processing_ms": 5}, 10), partition=partition)
            assert wait_for(lambda: job_state(bridge, second)["completed"] == 1, timeout=15), "existing jobs go on"
            assert metric(bridge, "progress_bridge_tracked_jobs") == 3
    finally:
        assert bridge.stop()[0] == 0


def now_plus(seconds):
    moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_an_occurred_at_far_ahead_of_the_record_timestamp_is_implausible(ingest_bridge):
    bridge, reference = ingest_bridge
    future, near = "job_future_" + uuid.uuid4().hex[:6], "job_near_" + uuid.uuid4().hex[:6]
    implausible = metric_sample(bridge, "progress_bridge_events_invalid_total", reason="implausible_timestamp")
    with survives(bridge, reference):
        send(bridge, future, {**start(future), "occurred_at": now_plus(2 * 3600)},
             {**start(future), "occurred_at": now_plus(10 * 365 * 86400)})
        send(bridge, near, {**start(near), "occurred_at": now_plus(30 * 60)})  # within the default skew of an hour
        assert wait_for(lambda: job_state(bridge, near) is not None, timeout=15), "an event within the skew is applied"
        assert dead_letter_reasons(bridge, future, 2) == ["implausible_timestamp", "implausible_timestamp"]
        assert metric_sample(bridge, "progress_bridge_events_invalid_total", reason="implausible_timestamp") == implausible + 2
        assert job_state(bridge, future) is None


def test_video_created_out_of_order_ends_with_the_newer_title(ingest_bridge):
    bridge, reference = ingest_bridge
    job = "job_titles_" + uuid.uuid4().hex[:6]
    with survives(bridge, reference):
        send(bridge, job, start(job, total=1),
             event(job, "video.created", {"video_id": "v1", "title": "Newer title", "row_index": 9}, 5000),
             event(job, "video.created", {"video_id": "v1", "title": "Older title", "row_index": 2}, 1000))
        assert wait_for(lambda: (job_state(bridge, job) or {}).get("events_applied") == 3, timeout=15), job_state(bridge, job)
        videos = strict_json(http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{job}/videos")[1])["videos"]
        assert len(videos) == 1 and videos[0]["title"] == "Newer title", videos


def test_an_oversized_dead_letter_is_truncated_with_its_size_hash_and_source(ingest_bridge):
    bridge, reference = ingest_bridge
    job = "job_huge_" + uuid.uuid4().hex[:6]
    original = b"{" + b"x" * 20000
    small = b"{not json"
    truncated_before = metric(bridge, "progress_bridge_dead_letters_truncated_total")
    with survives(bridge, reference):
        monitor = Monitor(bridge.bootstrap)
        delivered = []
        for value in (original, small):
            monitor.producer.produce(monitor.topic, key=job, value=value, headers=[("traceparent", b"00-abc-def-01")],
                                     on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset())))
        monitor.flush()
        assert [d[0] for d in delivered] == [None, None]
        letters = read_dead_letters(bridge.bootstrap, job, 2)
        assert len(letters) == 2, letters
        (value, headers, message), (small_value, small_headers, _) = letters
        assert headers["x-dlq-reason"] == "malformed_json"
        assert headers["x-dlq-truncated"] == "true"
        assert headers["x-dlq-original-size"] == str(len(original))
        assert headers["x-dlq-original-sha256"] == hashlib.sha256(original).hexdigest()
        assert (headers["x-dlq-source-topic"], headers["x-dlq-source-partition"], headers["x-dlq-source-offset"]) == \
            ("progress.events", str(delivered[0][1]), str(delivered[0][2]))
        assert 0 < len(value) < len(original) and original.startswith(value)
        record_size = len(value) + len(job) + sum(len(k) + len(v or "") for k, v in headers.items())
        assert record_size <= 4096, f"the dead letter must fit --dlq-max-bytes 4096: {record_size}"
        assert small_value == small and "x-dlq-truncated" not in small_headers, small_headers
        assert small_headers["x-dlq-source-offset"] == str(delivered[1][2])
    assert metric(bridge, "progress_bridge_dead_letters_truncated_total") == truncated_before + 1


def test_a_flood_of_job_events_for_a_large_job_does_not_hold_ingest_back():
    # A job event's message carries the job's whole progress (counts, throughput, processing times). Computing it
    # walked and sorted every video: for a job of 10,000 videos, milliseconds per job.progress, so a producer flooding
    # them held back everything behind them in the partition. Now it costs the same for any size of job.
    b = Bridge("--no-demo-monitor").wait_ready()
    try:
        reference = publish_reference_job(b)
        job = "job_large_" + uuid.uuid4().hex[:6]
        videos = 10_000
        monitor = Monitor(b.bootstrap)
        monitor.send(job, event(job, "job.state_changed", {"from": None, "to": "running", "job": {"total_videos": videos}}, 0))
        for i in range(videos):
            monitor.send(job, event(job, "video.completed", {"video_id": f"v{i}", "processing_ms": 1_000 + i}, 1 + i))
        monitor.flush()
        assert wait_for(lambda: (job_state(b, job) or {}).get("completed") == videos, timeout=60), job_state(b, job)
        applied = metric(b, "progress_bridge_events_applied_total")
        started = time.time()
        for i in range(2_000):
            monitor.send(job, event(job, "job.progress", {"total_videos": videos, "completed": videos, "failed": 0}, 20_000 + i))
        monitor.flush()
        assert wait_for(lambda: metric(b, "progress_bridge_events_applied_total") >= applied + 2_000, timeout=60)
        took = time.time() - started
        assert took < 10, f"2,000 job events of a job of {videos:,} videos took {took:.1f} s"
        assert_alive(b)
        assert_serves(b, reference)
        times = job_state(b, job)["processing_time_ms"]
        assert (times["samples"], times["p50"], times["p95"]) == (videos, 1_000 + 4_999, 1_000 + 9_499), times
    finally:
        assert b.stop()[0] == 0, b.exit_report(30)


# --- Hostile brokers ------------------------------------------------------------------------------------------------

def readiness(bridge):
    status, body, _ = http_get(bridge.admin_url + "/readyz")
    return status, json.loads(body)


def test_dead_letters_refused_for_good_make_the_bridge_unready_and_hold_ingest_until_fixed(mock_kafka):
    # Short delivery timeouts, so that a write that merely hangs fails in seconds (and shutdown is not held up).
    bridge = Bridge("--insecure-no-auth", "--kafka-config", "message.timeout.ms=3000", kafka=mock_kafka.bootstrap).wait_ready()
    try:
        bridge.wait_owning(4)  # only the partitions' owner dead-letters (and holds for it)
        reference = publish_reference_job(bridge)
        baseline = baseline_gauges(bridge)
        job = "job_dlq_perm_" + uuid.uuid4().hex[:6]
        monitor = Monitor(mock_kafka.bootstrap)
        monitor.send(job, start(job))
        monitor.flush()
        assert wait_for(lambda: job_state(bridge, job) is not None, timeout=20)
        # The cluster refuses the dead-letter topic: TOPIC_AUTHORIZATION_FAILED. (The mock states it in its metadata
        # only; a real broker also answers Produce with it. The bridge reads both.)
        mock_kafka.command("topic-error progress.events.dlq 29")
        monitor.send(job, b"{broken")
        monitor.send(job, event(job, "video.completed", {"video_id": "v1", "processing_ms": 5}, 10))
        monitor.flush()
        assert wait_for(lambda: metric(bridge, "progress_bridge_dead_letter_permanent_failures_total") >= 1, timeout=15), \
            "a dead letter Kafka refuses for good must be counted"
        assert wait_for(lambda: readiness(bridge)[0] == 503, timeout=10)
        status, body = readiness(bridge)
        assert status == 503 and body["checks"]["dead_letters"]["ok"] is False, body
        time.sleep(1)
        assert job_state(bridge, job)["completed"] == 0, "events behind the unwritten dead letter are held"
        assert_alive(bridge)
        assert_serves(bridge, reference)

        mock_kafka.command("topic-error progress.events.dlq 0")
        assert wait_for(lambda: readiness(bridge)[0] == 200, timeout=30), readiness(bridge)
        assert wait_for(lambda: job_state(bridge, job)["completed"] == 1, timeout=30), "the held events are applied"
        letters = read_dead_letters(mock_kafka.bootstrap, job, 1)
        assert [letter[0] for letter in letters] == [b"{broken"], letters
        assert letters[0][1]["x-dlq-reason"] == "malformed_json"
        assert_gauges_back(bridge, baseline)
    finally:
        assert bridge.stop()[0] == 0


def test_a_broker_outage_is_reported_and_readiness_recovers_without_new_events(mock_kafka):
    bridge = Bridge("--insecure-no-auth", kafka=mock_kafka.bootstrap).wait_ready()
    try:
        reference = publish_reference_job(bridge)
        assert wait_for(lambda: metric(bridge, "progress_bridge_kafka_up") == 1, timeout=20)
        mock_kafka.command("down 1")
        down = time.time()
        assert wait_for(lambda: metric(bridge, "progress_bridge_kafka_up") == 0, timeout=25), "kafka_up must drop"
        assert wait_for(lambda: readiness(bridge)[0] == 503, timeout=10), readiness(bridge)
        assert_alive(bridge)
        assert_serves(bridge, reference)  # from memory, while the broker is away
        # Longer than the group session (6 s in these tests): the member is dropped from the group and must rejoin.
        time.sleep(max(0, 8 - (time.time() - down)))
        mock_kafka.command("up 1")
        up = time.time()
        assert wait_for(lambda: metric(bridge, "progress_bridge_kafka_up") == 1, timeout=20), "kafka_up must come back"
        assert wait_for(lambda: readiness(bridge)[0] == 200, timeout=20 - (time.time() - up) + 1), readiness(bridge)
        assert time.time() - up <= 21
        assert_alive(bridge)
        assert_serves(bridge, reference)
        # And ingest really resumes: committing offsets of partitions it no longer owned used to restart the
        # group join every second, so the member never got partitions again while /readyz said 200.
        job = "job_after_outage_" + uuid.uuid4().hex[:6]
        monitor = Monitor(mock_kafka.bootstrap)
        monitor.send(job, start(job))
        monitor.send(job, event(job, "video.completed", {"video_id": "v1", "processing_ms": 5}, 10))
        monitor.flush()
        assert wait_for(lambda: (job_state(bridge, job) or {}).get("completed") == 1, timeout=40), \
            "events published after the outage must be applied"
    finally:
        assert bridge.stop()[0] == 0

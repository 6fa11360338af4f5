"""Fixtures that start the real progress-bridge binary on loopback with its embedded mock Kafka."""
import asyncio
import json
import os
import pathlib
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = os.environ.get("BRIDGE_BINARY", str(ROOT / ".build" / "debug" / "progress-bridge"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0):
    """Returns (status, body bytes, content type) without raising on 4xx/5xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def _schema_registry():
    import referencing
    registry = referencing.Registry()
    for path in (ROOT / "schemas").rglob("*.json"):
        document = json.loads(path.read_text())
        registry = registry.with_resource(document["$id"], referencing.Resource.from_contents(document))
    return registry


SCHEMAS = _schema_registry()


def schema_validator(relative: str, pointer: str = ""):
    """A validator of the repository's schema `relative` (under schemas/), or of its definition at `pointer`."""
    import jsonschema
    document = json.loads((ROOT / "schemas" / relative).read_text())
    schema = {"$ref": document["$id"] + pointer} if pointer else document
    return jsonschema.Draft202012Validator(schema, registry=SCHEMAS)


OUTBOUND_MESSAGE = schema_validator("outbound/message.schema.json")
OUTBOUND_COUNT = [0]  # messages checked in this run


def assert_outbound(message):
    """Every message the bridge sends must match schemas/outbound/message.schema.json."""
    errors = sorted(OUTBOUND_MESSAGE.iter_errors(message), key=lambda e: list(e.absolute_path))
    assert not errors, f"{message.get('type')} does not match its schema: " + "; ".join(
        f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:3])
    OUTBOUND_COUNT[0] += 1
    return message


def assert_matches(relative: str, pointer: str, value):
    """`value` (a REST answer) matches the definition `pointer` of schemas/`relative`."""
    errors = list(schema_validator(relative, pointer).iter_errors(value))
    assert not errors, f"{relative}{pointer}: " + "; ".join(f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:3])
    return value


async def receive_until(ws, predicate, timeout=20.0):
    """Collects a WebSocket's messages until one satisfies predicate; returns all of them. Each is checked against
    the outbound message schema."""
    messages = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; got {[(m['type'], m.get('data', {}).get('code')) for m in messages]}"
        messages.append(assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), remaining))))
        if predicate(messages[-1]):
            return messages


def wait_for(predicate, timeout=30, interval=0.2):
    """Polls until predicate() is true; returns whether it became true in time."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def job_state(bridge, job, token=None):
    """The job's JobProgress from REST, or None while unknown."""
    status, body, _ = http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{job}" + (f"?token={token}" if token else ""))
    return json.loads(body) if status == 200 else None


def metric(bridge, name):
    """The sum of a metric's samples on /metrics."""
    _, body, _ = http_get(bridge.admin_url + "/metrics")
    return sum(float(line.split()[-1]) for line in body.decode().splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


class Bridge:
    """A running bridge process and what it logged."""

    started = []  # every bridge of this test run, newest last (for log excerpts of failures)

    def __init__(self, *extra_args, env=None, kafka=None, port=None):
        Bridge.started.append(self)
        self.port = port or free_port()
        self.admin_port = free_port()
        self.lines = []
        self.bootstrap = kafka
        args = [BINARY, "--port", str(self.port), "--admin-port", str(self.admin_port), "--log-format", "json", *extra_args]
        if kafka:
            # An external (mock) cluster: the mock does not wake waiting fetches, so keep them short; and
            # its group coordinator waits out a departed member's session, so keep sessions short too.
            args += ["--kafka-bootstrap", kafka, "--kafka-config", "fetch.wait.max.ms=10",
                     "--kafka-config", "session.timeout.ms=6000", "--kafka-config", "heartbeat.interval.ms=500"]
        self.process = subprocess.Popen(
            args, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={**os.environ, **(env or {})})
        self._ready = threading.Event()
        if kafka:
            self._ready.set()
        threading.Thread(target=self._read_logs, daemon=True).start()

    def _read_logs(self):
        for line in self.process.stderr:
            self.lines.append(line)
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if "bootstrap_servers" in entry:
                self.bootstrap = entry["bootstrap_servers"]
                self._ready.set()

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self):
        return f"http://127.0.0.1:{self.admin_port}"

    def wait_ready(self, timeout=30.0):
        assert self._ready.wait(timeout), "bridge did not log its embedded bootstrap servers:\n" + "".join(self.lines)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("bridge exited early:\n" + "".join(self.lines))
            try:
                status, _, _ = http_get(self.admin_url + "/readyz", timeout=1)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("bridge never became ready:\n" + "".join(self.lines))

    def wait_owning(self, partitions=1, timeout=30.0):
        """Until this replica owns at least `partitions` input partitions in its consumer group (the mock cluster
        holds a new group's first assignment back for 3 s): only an owner dead-letters, checkpoints and commits."""
        assert wait_for(lambda: metric(self, "progress_bridge_partitions_owned") >= partitions, timeout=timeout), \
            "no partitions assigned:\n" + "".join(self.lines[-20:])
        return self

    def exit_report(self, tail=30):
        """What to show of the log when the bridge exited badly: around the crash report, if it printed one (the
        lines before it say what failed, its first frames where — a crash report of every thread runs to hundreds of
        lines, and its tail alone says nothing), else the last `tail` lines."""
        crash = next((i for i, line in enumerate(self.lines) if "*** Program crashed" in line), None)
        if crash is None:
            return "".join(self.lines[-tail:])
        return "".join(self.lines[max(0, crash - 30):crash + 60])

    def stop(self, timeout=30.0):
        """SIGTERM, then the exit code and how long the shutdown took."""
        if self.process.poll() is not None:
            return self.process.returncode, 0.0
        started = time.time()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError("bridge did not stop within %ss of SIGTERM" % timeout)
        return code, time.time() - started


@pytest.fixture(scope="module")
def bridge():
    b = Bridge("--no-demo-monitor").wait_ready()
    yield b
    code, _ = b.stop()
    assert code == 0, b.exit_report()


class MockKafka:
    """`progress-bridge mock-kafka`: a mock cluster that outlives the bridges under test, with fault injection."""

    def __init__(self, brokers=1, topics=()):
        specs = [arg for topic in topics for arg in ("--topic", topic)]
        self.process = subprocess.Popen([BINARY, "mock-kafka", "--brokers", str(brokers), *specs], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.bootstrap = json.loads(self.process.stdout.readline())["bootstrap_servers"]

    def command(self, line):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        assert answer == {"ok": line}, answer

    def stop(self):
        self.process.stdin.write("quit\n")
        self.process.stdin.flush()
        self.process.wait(10)


@pytest.fixture
def mock_kafka():
    kafka = MockKafka()
    yield kafka
    kafka.stop()


# --- Shared helpers of the adversarial suites (test_adversarial*.py) ---------------------------------------------

GAUGES = ("progress_bridge_websocket_connections", "progress_bridge_websocket_limiter_slots",
          "progress_bridge_send_queue_bytes", "progress_bridge_http_connections")


def metrics_text(bridge) -> str:
    return http_get(bridge.admin_url + "/metrics")[1].decode()


def metric_sample(bridge, name, **labels):
    """The one sample of `name` whose labels include `labels` (0 when absent)."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in metrics_text(bridge).splitlines():
        if line.startswith(name + "{") and all(w in line.split("}")[0] for w in wanted):
            return float(line.split()[-1])
        if not labels and line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def gauges(bridge) -> dict:
    """The four resource gauges from one /metrics read."""
    values = {}
    for line in metrics_text(bridge).splitlines():
        name = line.split(" ")[0]
        if name in GAUGES:
            values[name] = float(line.split()[-1])
    assert set(values) == set(GAUGES), f"missing gauges: {set(GAUGES) - set(values)}"
    return values


def baseline_gauges(bridge, timeout=5.0) -> dict:
    """The gauges once two reads 0.3 s apart agree (connections of earlier requests have closed)."""
    previous = gauges(bridge)
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.3)
        current = gauges(bridge)
        if current == previous:
            return current
        previous = current
    return previous


def assert_gauges_back(bridge, baseline, timeout=15.0):
    """Polls until every resource gauge is back at its baseline value."""
    seen = {}

    def back():
        seen.clear()
        seen.update(gauges(bridge))
        return seen == baseline
    assert wait_for(back, timeout=timeout, interval=0.25), \
        f"gauges did not return to their baseline within {timeout}s: baseline {baseline}, now {seen}"


def assert_alive(bridge):
    assert bridge.process.poll() is None, "the bridge died:\n" + bridge.exit_report(40)
    status, body, _ = http_get(bridge.admin_url + "/healthz")
    assert status == 200, body


REFERENCE_VIDEOS, REFERENCE_FAILED = 3, {2}


def publish_reference_job(bridge, job=None, token=None, bootstrap=None):
    """Publishes a small complete job (3 videos, one failed) and waits until it is applied; returns its id."""
    import uuid
    from monitor import Monitor, a_job
    job = job or "job_ref_" + uuid.uuid4().hex[:8]
    monitor = Monitor(bootstrap or bridge.bootstrap)
    for e in a_job(job, videos=REFERENCE_VIDEOS, fail=REFERENCE_FAILED):
        monitor.send(job, e)
    monitor.flush()
    assert wait_for(lambda: (job_state(bridge, job, token=token) or {}).get("state") == "completed", timeout=20), \
        job_state(bridge, job, token=token)
    return job


def assert_serves(bridge, job, token=None):
    """A fresh, well-behaved subscriber of `job` (a reference job) gets connection.ack then a job.snapshot with its
    numbers, and REST gives the same numbers."""
    import asyncio
    import uuid
    import websockets
    connection = "conn_ok_" + uuid.uuid4().hex[:6]
    url = f"{bridge.ws_url}/?job_id={job}&connection_id={connection}" + (f"&token={token}" if token else "")

    async def subscribe():
        async with websockets.connect(url, open_timeout=10, ping_interval=None, max_size=None) as ws:
            return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]
    ack, snapshot = asyncio.run(subscribe())
    assert ack["type"] == "connection.ack" and ack["seq"] == 0 and ack["data"]["connection_id"] == connection, ack
    assert snapshot["type"] == "job.snapshot", snapshot
    expected = {"state": "completed", "total_videos": REFERENCE_VIDEOS, "completed": REFERENCE_VIDEOS - len(REFERENCE_FAILED),
                "failed": len(REFERENCE_FAILED), "pending": 0, "processing": 0, "percent_complete": 100}
    got = {k: snapshot["data"]["job"][k] for k in expected}
    assert got == expected, f"snapshot numbers {got} != {expected}"
    assert snapshot["data"]["videos_total"] == REFERENCE_VIDEOS
    rest = job_state(bridge, job, token=token)
    assert rest is not None and {k: rest[k] for k in expected} == expected, rest


def read_dead_letters(bootstrap, key: str, count=1, timeout=20.0, topic="progress.events.dlq"):
    """The dead letters with this key (as (value, headers dict, message)), once `count` have been read or at the timeout."""
    import uuid
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "dlq-adv-" + uuid.uuid4().hex,
                       "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10, "enable.auto.commit": False})
    found = []
    deadline = time.time() + timeout
    try:
        # Assigned, not subscribed: no group join to wait for. The topic appears with its first dead letter.
        partitions = {}
        while time.time() < deadline and not partitions:
            partitions = reader.list_topics(topic, timeout=5).topics[topic].partitions or {}
            if not partitions:
                time.sleep(0.2)
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])
        while time.time() < deadline and len(found) < count:
            message = reader.poll(0.3)
            if message is None or message.error():
                continue
            if message.key() == key.encode():
                headers = {k: (v.decode() if v is not None else None) for k, v in (message.headers() or [])}
                found.append((message.value(), headers, message))
    finally:
        reader.close()
    return found


# Raw WebSocket frames, for clients no library would be.

def ws_frame(opcode, payload=b"", fin=True, mask=True, rsv=0):
    """One client frame; `mask=False` and `rsv` make protocol violations."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        repeated = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big") if n else b""
        head += key
    return head + payload


def read_frames(sock, timeout=10.0, until=lambda opcode, payload: False):
    """Reads server frames until a close frame, `until(opcode, payload)`, the end of the connection, or the timeout.
    Returns (frames as (opcode, payload), how it ended: "close", "until", "eof", "reset" or "timeout")."""
    buffer = bytearray()
    position = 0
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        while len(buffer) - position >= 2:
            b0, b1 = buffer[position], buffer[position + 1]
            n, offset = b1 & 0x7F, position + 2
            if n == 126:
                if len(buffer) - offset < 2:
                    break
                n, offset = int.from_bytes(buffer[offset:offset + 2], "big"), offset + 2
            elif n == 127:
                if len(buffer) - offset < 8:
                    break
                n, offset = int.from_bytes(buffer[offset:offset + 8], "big"), offset + 8
            if b1 & 0x80:
                offset += 4
            if len(buffer) - offset < n:
                break
            payload = bytes(buffer[offset:offset + n])
            position = offset + n
            frames.append((b0 & 0x0F, payload))
            if b0 & 0x0F == 8:
                return frames, "close"
            if until(b0 & 0x0F, payload):
                return frames, "until"
        if position > (1 << 20):
            del buffer[:position]
            position = 0
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return frames, "timeout"
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(262144)
        except socket.timeout:
            return frames, "timeout"
        except (ConnectionResetError, BrokenPipeError):
            return frames, "reset"
        if not chunk:
            return frames, "eof"
        buffer += chunk


def frame_close_code(frames):
    """The code of the close frame among `frames`, or None."""
    for opcode, payload in frames:
        if opcode == 8:
            return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
    return None


def text_messages(frames):
    return [assert_outbound(json.loads(payload)) for opcode, payload in frames if opcode == 1]


def abort(sock):
    """Closes with a TCP reset (SO_LINGER 0)."""
    import struct
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the item (`item.rep_call`), so a fixture can tell whether its test failed."""
    outcome = yield
    setattr(item, "rep_" + outcome.get_result().when, outcome.get_result())


def log_excerpt(bridge, since=0, limit=40):
    """The bridge's log lines from index `since`, without librdkafka's connection chatter, at most `limit` (the last)."""
    noise = ("Connect to ipv4", "ignoring leader", "Connection refused")
    lines = [line.rstrip() for line in bridge.lines[since:] if not any(n in line for n in noise)]
    return lines[-limit:]


@pytest.fixture
def bridge_logs_on_failure(request):
    """Prints what every running bridge logged during a test that failed."""
    marks = {id(b): len(b.lines) for b in Bridge.started}
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for b in Bridge.started:
            excerpt = log_excerpt(b, marks.get(id(b), 0))
            if excerpt:
                print(f"--- bridge :{b.port} log during the test ---")
                print("\n".join(excerpt))


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"outbound WebSocket messages checked against schemas/outbound/message.schema.json: {OUTBOUND_COUNT[0]}")

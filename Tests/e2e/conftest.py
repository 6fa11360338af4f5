"""Fixtures that start the real progress-bridge binary on loopback with its embedded mock Kafka."""
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

    def __init__(self, *extra_args, env=None, kafka=None):
        self.port = free_port()
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
    assert code == 0, "".join(b.lines[-30:])


class MockKafka:
    """`progress-bridge mock-kafka`: a mock cluster that outlives the bridges under test, with fault injection."""

    def __init__(self, brokers=1):
        self.process = subprocess.Popen([BINARY, "mock-kafka", "--brokers", str(brokers)], stdin=subprocess.PIPE,
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

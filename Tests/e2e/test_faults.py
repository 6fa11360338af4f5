"""Shutdown and broker faults against a mock cluster that outlives the bridge process."""
import asyncio
import json
import threading
import time
import uuid

import websockets

from conftest import Bridge, MockKafka, http_get, job_state, metric, wait_for
from monitor import Monitor, a_job, event


def start_running_job(monitor, job, total, flush=True):
    monitor.send(job, event(job, "job.state_changed", {"from": None, "to": "running", "job": {"total_videos": total}}, 0))
    if flush:
        monitor.flush()


def test_sigterm_closes_subscribers_with_1001_commits_and_exits_promptly(mock_kafka):
    group = "sigterm-" + uuid.uuid4().hex[:6]
    bridge = Bridge("--insecure-no-auth", "--group-id", group, kafka=mock_kafka.bootstrap).wait_ready().wait_owning(4)
    job = "job_term_" + uuid.uuid4().hex[:6]
    monitor = Monitor(mock_kafka.bootstrap)
    for e in a_job(job, videos=5):
        monitor.send(job, e)
    monitor.flush()
    assert wait_for(lambda: (job_state(bridge, job) or {}).get("state") == "completed")
    consumed = metric(bridge, "progress_bridge_events_consumed_total")

    async def subscribe_then_terminate():
        async with websockets.connect(f"{bridge.ws_url}/?job_id={job}") as ws:
            await ws.recv()
            await ws.recv()
            stopper = threading.Thread(target=lambda: results.append(bridge.stop()))
            stopper.start()
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 30)
            except websockets.exceptions.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
            stopper.join()
            return code

    results = []
    close_code = asyncio.run(subscribe_then_terminate())
    exit_code, took = results[0]
    assert close_code == 1001
    assert exit_code == 0 and took < 10, took
    assert any("left the group" in line for line in bridge.lines)

    # Offsets were committed: a new bridge in the same group reads only what came after.
    again = Bridge("--insecure-no-auth", "--group-id", group, kafka=mock_kafka.bootstrap).wait_ready()
    try:
        monitor.send(job, event(job, "job.progress", {"total_videos": 5, "completed": 5, "failed": 0}, 999_000))
        monitor.flush()
        assert wait_for(lambda: metric(again, "progress_bridge_events_consumed_total") >= 1, timeout=45)
        time.sleep(1)
        assert metric(again, "progress_bridge_events_consumed_total") == 1, f"{consumed} were consumed before; none may be read again"
    finally:
        assert again.stop()[0] == 0


def test_a_broker_outage_mid_stream_loses_nothing_and_is_reported(mock_kafka):
    bridge = Bridge("--insecure-no-auth", kafka=mock_kafka.bootstrap).wait_ready()
    try:
        job = "job_outage_" + uuid.uuid4().hex[:6]
        total = 300
        monitor = Monitor(mock_kafka.bootstrap)
        start_running_job(monitor, job, total)
        not_ready_seen = []

        def watch_readiness():
            while not stop.is_set():
                try:
                    if http_get(bridge.admin_url + "/readyz", timeout=2)[0] == 503:
                        not_ready_seen.append(time.time())
                except OSError:
                    pass
                time.sleep(0.2)

        stop = threading.Event()
        watcher = threading.Thread(target=watch_readiness)
        watcher.start()
        for i in range(total):
            monitor.send(job, event(job, "video.completed", {"video_id": f"v{i}", "processing_ms": 10}, 1000 + i))
            if i == 100:
                monitor.producer.flush(10)
                mock_kafka.command("down 1")
                down_at = time.time()
            if i == 200:
                time.sleep(max(0, 6 - (time.time() - down_at)))
                mock_kafka.command("up 1")
            monitor.producer.poll(0)
            time.sleep(0.01)
        monitor.flush()
        assert wait_for(lambda: (job_state(bridge, job) or {}).get("completed") == total, timeout=90), job_state(bridge, job)
        stop.set()
        watcher.join()
        assert not_ready_seen, "/readyz must report the outage"
        assert wait_for(lambda: http_get(bridge.admin_url + "/readyz")[0] == 200, timeout=30), "and recover by itself"
        assert job_state(bridge, job)["completed"] == total
    finally:
        assert bridge.stop()[0] == 0


def test_kill_9_mid_stream_then_restart_gives_the_same_aggregates_as_a_clean_run(mock_kafka):
    import signal
    group = "kill9-" + uuid.uuid4().hex[:6]
    job = "job_kill_" + uuid.uuid4().hex[:6]
    events = a_job(job, videos=40, fail={3, 17, 29})
    monitor = Monitor(mock_kafka.bootstrap)
    first = Bridge("--insecure-no-auth", "--group-id", group, kafka=mock_kafka.bootstrap).wait_ready().wait_owning(4)
    for e in events[:60]:
        monitor.send(job, e)
    monitor.flush()
    assert wait_for(lambda: (job_state(first, job) or {}).get("events_applied") == 60)
    applied = time.time()
    # At least one checkpoint (state records, then offsets) after that — waited for, not guessed: a loaded machine
    # can take longer than the 1 s interval.
    assert wait_for(lambda: metric(first, "progress_bridge_last_commit_timestamp_seconds") > applied + 0.1, timeout=20)
    for e in events[60:90]:
        monitor.send(job, e)
        monitor.send(job, e)  # and the monitor's retries
    monitor.flush()
    time.sleep(0.3)  # mid-stream: some of these applied, some not; their offsets mostly uncommitted
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    for e in events[90:]:
        monitor.send(job, e)
    monitor.flush()

    restarted = Bridge("--insecure-no-auth", "--group-id", group, kafka=mock_kafka.bootstrap).wait_ready()
    clean = Bridge("--insecure-no-auth", "--group-id", "clean-" + uuid.uuid4().hex[:6], kafka=mock_kafka.bootstrap).wait_ready()
    try:
        for bridge in (restarted, clean):
            assert wait_for(lambda: (job_state(bridge, job) or {}).get("state") == "completed", timeout=60), job_state(bridge, job)
        after_restart, reference = job_state(restarted, job), job_state(clean, job)
        assert after_restart == reference
        assert reference["completed"] == 37 and reference["failed"] == 3 and reference["events_applied"] == len(events)
        videos = [json.loads(http_get(f"{b.http_url}/api/v1/bulk-jobs/{job}/videos?sort=id&limit=1000")[1])["videos"] for b in (restarted, clean)]
        assert videos[0] == videos[1]
        assert any("state restored" in line and '"jobs":"1"' in line for line in restarted.lines), "the job came back from the changelog"
        # And it did not simply re-read the topic: it resumed from its committed offsets.
        assert metric(restarted, "progress_bridge_events_consumed_total") < metric(clean, "progress_bridge_events_consumed_total") - 50
    finally:
        assert restarted.stop()[0] == 0
        assert clean.stop()[0] == 0


def test_a_failing_dead_letter_write_holds_the_offset_and_is_retried(mock_kafka):
    from confluent_kafka import Consumer
    # Short delivery timeouts, so that each failed attempt is seen in seconds.
    bridge = Bridge("--insecure-no-auth", "--kafka-config", "message.timeout.ms=1500", kafka=mock_kafka.bootstrap).wait_ready()
    try:
        bridge.wait_owning(4)  # only the partitions' owner dead-letters (and holds for it)
        job = "job_dlqfail_" + uuid.uuid4().hex[:6]
        monitor = Monitor(mock_kafka.bootstrap)
        monitor.send(job, event(job, "job.state_changed", {"from": None, "to": "running", "job": {"total_videos": 2}}, 0))
        monitor.flush()
        assert wait_for(lambda: job_state(bridge, job) is not None)
        mock_kafka.command("topic-error progress.events.dlq 29")  # TOPIC_AUTHORIZATION_FAILED
        monitor.send(job, b"{broken")
        monitor.send(job, event(job, "video.completed", {"video_id": "v1", "processing_ms": 5}, 10))
        monitor.flush()
        assert wait_for(lambda: metric(bridge, "progress_bridge_dead_letter_failures_total") >= 2, timeout=60)
        # Events behind the unwritten dead letter wait: nothing is skipped.
        assert job_state(bridge, job)["completed"] == 0
        mock_kafka.command("topic-error progress.events.dlq 0")
        assert wait_for(lambda: job_state(bridge, job)["completed"] == 1, timeout=60)
        assert metric(bridge, "progress_bridge_events_dead_lettered_total") == 1
        reader = Consumer({"bootstrap.servers": mock_kafka.bootstrap, "group.id": "dlq-" + uuid.uuid4().hex, "auto.offset.reset": "earliest"})
        reader.subscribe(["progress.events.dlq"])
        found = None
        deadline = time.time() + 20
        while time.time() < deadline and found is None:
            message = reader.poll(0.5)
            if message is not None and not message.error() and message.key() == job.encode():
                found = message
        reader.close()
        assert found is not None and found.value() == b"{broken"
    finally:
        assert bridge.stop()[0] == 0


def slowest_broker_round_trip(bridge):
    """The largest `progress_bridge_kafka_broker_rtt_seconds` sample, or None before the first statistics."""
    _, body, _ = http_get(bridge.admin_url + "/metrics")
    samples = [float(line.split()[-1]) for line in body.decode().splitlines()
               if line.startswith("progress_bridge_kafka_broker_rtt_seconds{")]
    return max(samples) if samples else None


def test_slow_brokers_leader_changes_and_request_errors_lose_nothing():
    from conftest import MockKafka
    kafka = MockKafka(brokers=3)
    bridge = Bridge("--insecure-no-auth", "--kafka-config", "statistics.interval.ms=500", kafka=kafka.bootstrap).wait_ready()
    try:
        job = "job_chaos_" + uuid.uuid4().hex[:6]
        total = 200
        monitor = Monitor(kafka.bootstrap)
        start_running_job(monitor, job, total, flush=False)
        for i in range(total):
            monitor.send(job, event(job, "video.completed", {"video_id": f"v{i}", "processing_ms": 10}, 1000 + i))
            if i == 50:
                monitor.producer.flush(10)
                # Once the group has settled, requests are quick; the injected delay must then show.
                assert wait_for(lambda: (slowest_broker_round_trip(bridge) or 1) < 0.3, timeout=20), slowest_broker_round_trip(bridge)
                for broker in (1, 2, 3):
                    kafka.command(f"rtt {broker} 300")
                assert wait_for(lambda: (slowest_broker_round_trip(bridge) or 0) >= 0.3, timeout=20), "the slow brokers show in the metrics"
            if i == 100:
                monitor.producer.flush(30)
                for partition in range(4):
                    kafka.command(f"leader progress.events {partition} {partition % 3 + 1}")
                kafka.command("request-errors 1 6 5")  # Fetch: NOT_LEADER_OR_FOLLOWER, five times
            if i == 150:
                monitor.producer.flush(30)
                for broker in (1, 2, 3):
                    kafka.command(f"rtt {broker} 0")
            monitor.producer.poll(0)
        monitor.flush()
        assert wait_for(lambda: (job_state(bridge, job) or {}).get("completed") == total, timeout=120), job_state(bridge, job)
        state = job_state(bridge, job)
        assert state["events_applied"] == total + 1 and state["percent_complete"] == 100
    finally:
        assert bridge.stop()[0] == 0
        kafka.stop()


def test_finished_jobs_are_forgotten_after_their_retention_also_across_restarts(mock_kafka):
    group = "retention-" + uuid.uuid4().hex[:6]
    flags = ("--insecure-no-auth", "--group-id", group, "--finished-job-retention", "2")
    bridge = Bridge(*flags, kafka=mock_kafka.bootstrap).wait_ready().wait_owning(4)
    job, running = "job_old_" + uuid.uuid4().hex[:6], "job_live_" + uuid.uuid4().hex[:6]
    monitor = Monitor(mock_kafka.bootstrap)
    # Both in one partition: retention runs on the partition's stream time (its latest occurred_at), so that every
    # replica forgets a job at the same point of the stream.
    for e in a_job(job, videos=2):
        monitor.send(job, e, partition=0)
    monitor.send(running, event(running, "job.state_changed", {"from": None, "to": "running"}, 0), partition=0)
    monitor.flush()
    assert wait_for(lambda: (job_state(bridge, job) or {}).get("state") == "completed")
    finished_at = job_state(bridge, job)["updated_at"]
    time.sleep(3)
    assert job_state(bridge, job) is not None, "wall-clock time alone forgets nothing: the stream has not moved"
    # The stream moves on: 3 s of event time after the job finished.
    moved = event(running, "job.progress", {"total_videos": 2, "completed": 0, "failed": 0}, 0)
    import datetime
    at = datetime.datetime.fromisoformat(finished_at.replace("Z", "+00:00")) + datetime.timedelta(seconds=3)
    moved["occurred_at"] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    monitor.send(running, moved, partition=0)
    monitor.flush()
    assert wait_for(lambda: job_state(bridge, job) is None, timeout=15), "a finished job is forgotten after its retention"
    assert job_state(bridge, running) is not None, "running jobs stay"
    assert bridge.stop()[0] == 0
    again = Bridge(*flags, kafka=mock_kafka.bootstrap).wait_ready().wait_owning(4)
    try:
        assert job_state(again, running) is not None
        assert job_state(again, job) is None, "and it does not come back from the state topic"
        # The same job id again, later in the stream: a new incarnation, which survives the next restart whole.
        base = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.timezone.utc)  # the monitor's time origin
        for e in a_job(job, videos=3, start_ms=int((at - base).total_seconds() * 1000) + 1000):
            monitor.send(job, e, partition=0)
        monitor.flush()
        assert wait_for(lambda: (job_state(again, job) or {}).get("total_videos") == 3 and job_state(again, job)["state"] == "completed")
        reborn = job_state(again, job)
        time.sleep(2)  # a checkpoint
    finally:
        assert again.stop()[0] == 0
    third = Bridge(*flags, kafka=mock_kafka.bootstrap).wait_ready()
    try:
        assert job_state(third, job) == reborn, "the new incarnation was checkpointed after the old one's tombstones"
    finally:
        assert third.stop()[0] == 0


def test_jobs_that_stop_without_finishing_are_forgotten_after_the_idle_retention(mock_kafka):
    group = "idle-" + uuid.uuid4().hex[:6]
    flags = ("--insecure-no-auth", "--group-id", group, "--idle-job-retention", "5")
    bridge = Bridge(*flags, kafka=mock_kafka.bootstrap).wait_ready().wait_owning(4)
    silent, talking = "job_silent_" + uuid.uuid4().hex[:6], "job_talking_" + uuid.uuid4().hex[:6]
    monitor = Monitor(mock_kafka.bootstrap)
    for job in (silent, talking):
        monitor.send(job, event(job, "job.state_changed", {"from": None, "to": "running", "job": {"total_videos": 10}}, 0), partition=1)
    monitor.flush()
    assert wait_for(lambda: job_state(bridge, silent) is not None and job_state(bridge, talking) is not None)
    assert metric(bridge, "progress_bridge_active_jobs") == 2
    # The talking job's monitor keeps reporting, a second of event time apart; the silent one's went away.
    for i in range(1, 8):
        monitor.send(talking, event(talking, "video.completed", {"video_id": f"v{i}", "processing_ms": 5}, i * 1000), partition=1)
        monitor.flush()
        if i < 5:
            time.sleep(0.3)
            assert job_state(bridge, silent) is not None, f"{i} s of stream time: still within the idle retention"
    assert wait_for(lambda: job_state(bridge, silent) is None, timeout=15), "a job silent for longer than the idle retention is forgotten"
    assert job_state(bridge, talking) is not None, "a job still reporting stays"
    assert metric(bridge, "progress_bridge_active_jobs") == 1
    assert bridge.stop()[0] == 0
    again = Bridge(*flags, kafka=mock_kafka.bootstrap).wait_ready()
    try:
        assert job_state(again, talking) is not None
        assert job_state(again, silent) is None, "and it does not come back from the state topic"
    finally:
        assert again.stop()[0] == 0


def test_a_missing_topic_keeps_the_bridge_unready_and_says_which():
    kafka = MockKafka()
    # The mock creates any topic a client asks about; this makes it answer "unknown topic" for the dead-letter topic.
    kafka.command("topic-error progress.events.dlq 3")
    bridge = Bridge("--insecure-no-auth", kafka=kafka.bootstrap)
    try:
        def refused():
            try:
                status, body, _ = http_get(bridge.admin_url + "/readyz", timeout=1)
            except OSError:
                return None
            return body.decode() if status == 503 and "progress.events.dlq" in body.decode() else None
        assert wait_for(lambda: refused() is not None, timeout=30), "".join(bridge.lines[-10:])
        assert "does not create topics" in refused()
        assert any("cannot start ingest" in line and "progress.events.dlq" in line for line in bridge.lines)
        status, _, _ = http_get(bridge.admin_url + "/healthz")
        assert status == 200, "alive, only not ready"
    finally:
        assert bridge.stop()[0] == 0
        kafka.stop()

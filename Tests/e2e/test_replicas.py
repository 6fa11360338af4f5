"""Several replicas in one consumer group on one mock cluster, as Kubernetes runs them.

Every replica reads every input partition and serves every job with the same `seq`s (input offset + 1); the
group decides which replica owns which partition, and only the owner dead-letters, checkpoints and commits.
These tests roll the replicas, kill one with SIGKILL, and watch jobs from several replicas at once, and compare
everything with a single replica that read the same stream undisturbed.
"""
import asyncio
import json
import random
import threading
import time
import uuid
import zlib

import websockets
from confluent_kafka import Consumer, TopicPartition

from conftest import Bridge, MockKafka, http_get, job_state, metric, wait_for, assert_outbound
from monitor import Monitor, a_job, event

TOPICS = ("progress.events:4", "progress.events.dlq:1", "progress.state:4", "clean.dlq:1", "clean.state:4")
PARTITIONS = 4
TERMINAL = {"job.completed", "job.failed", "job.canceled"}


def partition_of(key: str) -> int:
    """Where confluent-kafka's default partitioner (librdkafka's consistent_random, CRC-32) puts `key`."""
    return zlib.crc32(key.encode()) % PARTITIONS


class Replicas:
    """A mock cluster and the replicas of one consumer group on it; `live` are those a client may connect to."""

    def __init__(self, count=3):
        self.kafka = MockKafka(topics=TOPICS)
        self.group = "replicas-" + uuid.uuid4().hex[:6]
        self.lock = threading.Lock()
        self.live = []
        self.all = []
        for _ in range(count):
            self.add()

    def add(self):
        bridge = Bridge("--insecure-no-auth", "--group-id", self.group, kafka=self.kafka.bootstrap).wait_ready()
        with self.lock:
            self.live.append(bridge)
            self.all.append(bridge)
        return bridge

    def retire(self, bridge):
        """No new client goes to `bridge` any more (as a Service stops routing to a terminating pod)."""
        with self.lock:
            self.live.remove(bridge)

    def pick(self, avoid=None):
        with self.lock:
            choices = [b for b in self.live if b is not avoid] or list(self.live)
        return random.choice(choices)

    def owned(self):
        with self.lock:
            live = list(self.live)
        return sum(metric(b, "progress_bridge_partitions_owned") for b in live)

    def wait_settled(self, timeout=60):
        """Until the live replicas own every partition between them."""
        started = time.time()
        assert wait_for(lambda: self.owned() == PARTITIONS, timeout=timeout, interval=0.1), \
            f"the live replicas own {self.owned()} of {PARTITIONS} partitions"
        return time.time() - started

    def owner_of(self, partition):
        for bridge in list(self.live):
            if f"progress.events/{partition}" in owned_partitions(bridge):
                return bridge
        return None

    def handover_log(self):
        """What each replica said about its partitions and commits: the story of a failed handover."""
        said = ("assigned", "revoked", "took over", "commit", "checkpoint", "lost", "leaving", "handed over")
        return "\n".join(f"replica {i}: {line.rstrip()}" for i, bridge in enumerate(self.all)
                         for line in list(bridge.lines) if any(word in line for word in said))

    def close(self):
        for bridge in self.all:
            if bridge.process.poll() is None:
                bridge.stop()
        self.kafka.stop()


def owned_partitions(bridge):
    """The partitions `bridge` last said it owns (its latest "partitions assigned/revoked" log line)."""
    owned = ""
    for line in list(bridge.lines):
        if '"owned"' in line:
            try:
                owned = json.loads(line).get("owned", owned)
            except ValueError:
                pass
    return set(filter(None, owned.split(",")))


def workload(jobs=60, videos=4, bad_every=6):
    """Jobs interleaved as a busy monitor sends them, with some invalid events: (key, value) pairs in order, the
    jobs, and the invalid events' values."""
    names = [f"job_rep_{uuid.uuid4().hex[:8]}" for _ in range(jobs)]
    streams = []
    bad = []
    for index, job in enumerate(names):
        events = [json.dumps(e) for e in a_job(job, videos=videos, fail={2} if index % 3 == 0 else set(), start_ms=index * 7)]
        if index % bad_every == 0:
            broken = f'{{"not json for {job}'
            violation = json.dumps(event(job, "video.completed", {"video_id": "v9"}, 5))  # no processing_ms
            events[3:3] = [broken, violation]
            bad += [broken, violation]
        streams.append([(job, value) for value in events])
    ordered = []
    while any(streams):
        for stream in streams:
            if stream:
                ordered.append(stream.pop(0))
    return ordered, names, bad


class Publisher(threading.Thread):
    """The monitor: publishes the workload at a steady rate."""

    def __init__(self, bootstrap, records, rate):
        super().__init__(daemon=True)
        self.monitor = Monitor(bootstrap)
        self.records = records
        self.rate = rate
        self.error = None

    def run(self):
        try:
            started = time.time()
            for i, (key, value) in enumerate(self.records):
                self.monitor.send(key, value)
                self.monitor.producer.poll(0)
                delay = started + i / self.rate - time.time()
                if delay > 0:
                    time.sleep(delay)
            self.monitor.flush()
        except Exception as error:  # reported by the test
            self.error = error


class Watchers(threading.Thread):
    """Dashboards: one WebSocket subscriber per job, each on some live replica; when its replica goes away
    (1001 on SIGTERM, a reset on SIGKILL) it reconnects to another with `last_seq`, as the client rule says."""

    def __init__(self, replicas, jobs):
        super().__init__(daemon=True)
        self.replicas = replicas
        self.jobs = jobs
        self.received = {job: [] for job in jobs}  # (connection number, replica port, message), in arrival order
        self.moves = {job: 0 for job in jobs}
        self.error = None

    def run(self):
        try:
            asyncio.run(self.watch_all())
        except Exception as error:
            self.error = error

    async def watch_all(self):
        await asyncio.wait_for(asyncio.gather(*(self.watch(job) for job in self.jobs)), timeout=240)

    async def watch(self, job):
        last, current, connection = None, None, 0
        while True:
            connection += 1
            bridge = self.replicas.pick(avoid=current)
            current = bridge
            url = f"{bridge.ws_url}/?job_id={job}&connection_id=watch-{job}"
            if last is not None:
                url += f"&last_seq={last}"
            try:
                async with websockets.connect(url, open_timeout=5, close_timeout=2) as ws:
                    while True:
                        message = assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), timeout=60)))
                        self.received[job].append((connection, bridge.port, message))
                        if message["type"] == "job.snapshot":
                            last = message["seq"]
                            if (message["data"]["job"] or {}).get("state") in ("completed", "failed", "canceled"):
                                return
                            continue
                        if message["seq"] > 0 and (last is None or message["seq"] > last):
                            last = message["seq"]
                            if message["type"] in TERMINAL:
                                return
            except (websockets.exceptions.ConnectionClosed, OSError, asyncio.TimeoutError):
                self.moves[job] += 1
                await asyncio.sleep(0.1)


def accepted(received):
    """What the client rule keeps: snapshots (which reset the largest seq seen) and messages with a larger seq."""
    kept, last = [], None
    for *_, message in received:
        if message["type"] == "job.snapshot":  # seq 0 before the job's first event
            kept.append(message)
            last = message["seq"]
        elif message["seq"] == 0:
            continue
        elif last is None or message["seq"] > last:
            kept.append(message)
            last = message["seq"]
    return kept


def history(bridge, job):
    """Every message of `job` as `bridge` keeps it for resume (the whole job: far fewer than 1,000 messages)."""
    async def replay():
        async with websockets.connect(f"{bridge.ws_url}/?job_id={job}&last_seq=0") as ws:
            messages = []
            while True:
                message = assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), timeout=20)))
                if message["seq"] > 0:
                    messages.append(message)
                if message["type"] in TERMINAL:
                    return messages
    return asyncio.run(replay())


def assert_watched_without_gaps(job, received, reference):
    """The subscriber of `job` saw every message the reference has after its first snapshot, each identical to the
    reference's, in order; a gap is allowed only where a snapshot filled it. Every connection's own messages have
    strictly increasing seqs (nothing twice, nothing backwards), and every reconnect resumed from a replica's
    history (no `resume_unavailable`)."""
    by_connection = {}
    for number, _, message in received:
        by_connection.setdefault(number, []).append(message)
    for number, messages in by_connection.items():
        seqs = [m["seq"] for m in messages if m["seq"] > 0 and m["type"] != "job.snapshot"]
        assert seqs == sorted(set(seqs)), (job, number, seqs)
        errors = [m for m in messages if m["type"] == "error"]
        assert not errors, (job, number, errors)
        if number > 1 and len(messages) >= 2:  # a reconnect that got further than its ack
            assert any(m["type"] == "resume.ok" for m in messages), (job, number, messages[:3])
    kept = accepted(received)
    assert kept and kept[0]["type"] == "job.snapshot", (job, kept[:2])
    by_seq = {m["seq"]: m for m in reference}
    seqs = sorted(by_seq)
    for message in kept:
        if message["type"] != "job.snapshot":
            assert message == by_seq.get(message["seq"]), (job, message, by_seq.get(message["seq"]))
    for before, after in zip(kept, kept[1:]):
        if after["type"] == "job.snapshot":
            continue
        missed = [s for s in seqs if before["seq"] < s < after["seq"]]
        assert not missed, f"{job}: seqs {missed} between {before['seq']} and {after['seq']} were never delivered"
    assert kept[-1]["type"] in TERMINAL or kept[-1]["data"]["job"]["state"] in ("completed", "failed", "canceled"), kept[-1]


def dead_letters(bootstrap, topic="progress.events.dlq", settle=3.0, sources=False):
    """Every record of the dead-letter topic (read until nothing new arrives for `settle` seconds); with `sources`,
    each as (value, source partition, source offset) from its headers."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "dlq-" + uuid.uuid4().hex, "auto.offset.reset": "earliest",
                         "fetch.wait.max.ms": 10, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values, quiet = [], time.time()
    while time.time() - quiet < settle:
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            value = message.value().decode(errors="replace")
            headers = dict(message.headers() or [])
            values.append((value, int(headers["x-dlq-source-partition"]), int(headers["x-dlq-source-offset"]))
                          if sources else value)
            quiet = time.time()
    consumer.close()
    return values


def assert_dead_lettered_once_but_for_reported_handovers(replicas, bad, last_rebalance):
    """Every invalid event is dead-lettered; twice only where a replica reported that it gave the partition back
    without its last offsets committed, and only between that commit and where it had handled (at least once).
    A replica waits up to 10 s for the result of a handover's commit before it reports one."""
    time.sleep(max(0.0, last_rebalance + 11.0 - time.time()))
    written = dead_letters(replicas.kafka.bootstrap, sources=True)
    values = [value for value, _, _ in written]
    assert sorted(set(values)) == sorted(bad), "every invalid event, and nothing else, is dead-lettered"
    reported = [json.loads(line) for b in replicas.all for line in list(b.lines)
                if "handed over without its last offsets committed" in line]
    windows = [(int(r["partition"].rsplit("/", 1)[1]), int(r["committed"]), int(r["handled"])) for r in reported]
    repeated = [(p, o) for value, p, o in written if values.count(value) > 1]
    unexplained = [(p, o) for p, o in repeated if not any(p == wp and lo <= o < hi for wp, lo, hi in windows)]
    assert not unexplained, f"dead letters repeated outside every reported handover: {unexplained}\n{windows}\n" \
        + replicas.handover_log()
    print(f"\ndead letters: {len(bad)} invalid events, {len(values) - len(set(values))} repeated after "
          f"{len(windows)} handover(s) without a last commit")


def clean_run(replicas):
    """One more bridge, in a group of its own with its own dead-letter and state topics, reading the same stream."""
    return Bridge("--insecure-no-auth", "--group-id", "clean-" + uuid.uuid4().hex[:6], "--dlq-topic", "clean.dlq",
                  "--state-topic", "clean.state", kafka=replicas.kafka.bootstrap).wait_ready()


def assert_same_as_clean_run(bridges, clean, jobs):
    for job in jobs:
        assert wait_for(lambda: (job_state(clean, job) or {}).get("state") == "completed", timeout=60), job
        reference = job_state(clean, job)
        videos = json.loads(http_get(f"{clean.http_url}/api/v1/bulk-jobs/{job}/videos?sort=id&limit=100")[1])["videos"]
        for bridge in bridges:
            assert wait_for(lambda: job_state(bridge, job) == reference, timeout=30), (bridge.port, job, job_state(bridge, job), reference)
            theirs = json.loads(http_get(f"{bridge.http_url}/api/v1/bulk-jobs/{job}/videos?sort=id&limit=100")[1])["videos"]
            assert theirs == videos, (bridge.port, job)


def start_stream(replicas, records, jobs, seconds):
    """Dashboards watching some jobs, then the monitor publishing `records` over about `seconds`."""
    watchers = Watchers(replicas, jobs)
    watchers.start()
    time.sleep(1.0)
    publisher = Publisher(replicas.kafka.bootstrap, records, rate=len(records) / seconds)
    publisher.start()
    return publisher, watchers


def finish_stream(publisher, watchers):
    publisher.join()
    assert publisher.error is None, publisher.error
    watchers.join(timeout=180)
    assert not watchers.is_alive() and watchers.error is None, watchers.error


def assert_everything_as_in_a_clean_run(replicas, jobs, watchers):
    """Every live replica's aggregates, and every watcher's messages, against an undisturbed single replica."""
    clean = clean_run(replicas)
    try:
        assert_same_as_clean_run(replicas.live, clean, jobs)
        for job in watchers.jobs:
            assert_watched_without_gaps(job, watchers.received[job], history(clean, job))
    finally:
        clean.stop()


def test_three_replicas_share_the_work_and_serve_the_same_job_identically():
    replicas = Replicas(3)
    try:
        replicas.wait_settled()
        assert sorted(metric(b, "progress_bridge_partitions_owned") for b in replicas.live) == [1, 1, 2]
        records, jobs, bad = workload(jobs=12, videos=4, bad_every=4)
        # The same job on every replica at once, subscribed before anything is published.
        watched = jobs[0]

        async def watch_everywhere():
            async def one(bridge):
                async with websockets.connect(f"{bridge.ws_url}/?job_id={watched}") as ws:
                    messages = []
                    while not messages or messages[-1]["type"] not in TERMINAL:
                        messages.append(assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), timeout=30))))
                    return messages
            tasks = [asyncio.create_task(one(b)) for b in replicas.live]
            await asyncio.sleep(0.5)
            publisher = Publisher(replicas.kafka.bootstrap, records, rate=400)
            publisher.start()
            await asyncio.get_running_loop().run_in_executor(None, publisher.join)
            assert publisher.error is None, publisher.error
            return await asyncio.gather(*tasks)

        seen = asyncio.run(watch_everywhere())
        acks = [messages[0] for messages in seen]
        assert all(a["type"] == "connection.ack" for a in acks)
        rest = [[m for m in messages[1:]] for messages in seen]
        for messages in rest:
            messages[0]["ts"] = None  # the snapshot's ts is each replica's own clock; all else must match
        assert rest[0] == rest[1] == rest[2], "identical messages and seqs on every replica"
        seqs = [m["seq"] for m in rest[0][1:]]
        assert seqs == sorted(set(seqs)) and len(seqs) >= 10

        clean = clean_run(replicas)
        try:
            assert_same_as_clean_run(replicas.live, clean, jobs)
        finally:
            clean.stop()
        # Dead letters: each invalid event exactly once, written by its partition's owner alone.
        assert sorted(dead_letters(replicas.kafka.bootstrap)) == sorted(bad)
        assert all(metric(b, "progress_bridge_events_invalid_total") == len(bad) for b in replicas.live), \
            "every replica finds the same events invalid"
        assert sum(metric(b, "progress_bridge_events_dead_lettered_total") for b in replicas.live) == len(bad)
        # State: only the owner checkpoints a job — one header record per checkpoint it changed in, not one per replica.
        consumer = Consumer({"bootstrap.servers": replicas.kafka.bootstrap, "group.id": "state-" + uuid.uuid4().hex,
                             "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10, "enable.auto.commit": False})
        consumer.assign([TopicPartition("progress.state", p, 0) for p in range(PARTITIONS)])
        headers, records, quiet = {job: 0 for job in jobs}, 0, time.time()
        while time.time() - quiet < 3:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                quiet = time.time()
                records += 1
                key = message.key().decode()
                if key in headers:
                    headers[key] += 1
        consumer.close()
        # Each job came in a burst of about half a second: its owner wrote its header once or twice (the burst may
        # straddle a checkpoint); three writers would have written it at least three times.
        assert all(1 <= n <= 2 for n in headers.values()), headers
        assert records == sum(metric(b, "progress_bridge_state_records_written_total") for b in replicas.live)
    finally:
        replicas.close()


def test_a_rolling_restart_mid_stream_loses_nothing_and_subscribers_resume_elsewhere():
    replicas = Replicas(3)
    try:
        replicas.wait_settled()
        records, jobs, bad = workload(jobs=100, videos=3, bad_every=10)
        publisher, watchers = start_stream(replicas, records, jobs[::4], seconds=25)
        handovers = []
        for old in list(replicas.live):
            time.sleep(2.0)
            replicas.add()  # maxSurge 1: the new pod is ready (state restored, caught up) before the old one goes
            replicas.retire(old)
            stopped = time.time()
            code, took = old.stop()
            assert code == 0, old.exit_report(20)
            replicas.wait_settled()
            handovers.append(time.time() - stopped)
        finish_stream(publisher, watchers)
        print(f"\nhandover after SIGTERM (stop → the others own every partition): {', '.join(f'{h:.1f} s' for h in handovers)}")
        assert sum(watchers.moves.values()) >= 1, "some subscribers were on a replica that went away"
        assert_everything_as_in_a_clean_run(replicas, jobs, watchers)
        # Handovers: every invalid event dead-lettered exactly once, but where a last commit was refused.
        assert_dead_lettered_once_but_for_reported_handovers(replicas, bad, last_rebalance=stopped)
    finally:
        replicas.close()


def test_kill_9_of_the_owner_of_a_busy_partition_loses_nothing():
    replicas = Replicas(3)
    try:
        replicas.wait_settled()
        records, jobs, bad = workload(jobs=60, videos=3, bad_every=5)
        busy = partition_of(jobs[0])
        publisher, watchers = start_stream(replicas, records, jobs[::3], seconds=15)
        time.sleep(5.0)
        victim = replicas.owner_of(busy)
        assert victim is not None
        replicas.retire(victim)
        victim.process.kill()
        victim.process.wait(10)
        handover = replicas.wait_settled()
        print(f"\nhandover after SIGKILL (kill → the others own every partition, session timeout 6 s): {handover:.1f} s")
        finish_stream(publisher, watchers)
        # The new owner read back and dead-lettered what it had rejected while the partition had no owner.
        taken_over = [json.loads(line) for b in replicas.live for line in list(b.lines) if "took over: dead-lettered" in line]
        assert any(int(entry["dead_letters"]) > 0 for entry in taken_over), taken_over
        # And a replica started now, from the state the survivors wrote, agrees with them too.
        replicas.add()
        assert_everything_as_in_a_clean_run(replicas, jobs, watchers)
        # At least once: every invalid event is in the dead-letter topic (the dead owner may have written some of
        # those its successor writes again).
        written = dead_letters(replicas.kafka.bootstrap)
        assert set(written) == set(bad) and len(written) >= len(bad)
    finally:
        replicas.close()


def test_a_new_replica_is_ready_only_once_it_has_read_what_was_there_at_its_start():
    """A rollout routes clients to a new pod once it is ready: by then it must show current data."""
    kafka = MockKafka(topics=TOPICS)
    bridge = None
    try:
        monitor = Monitor(kafka.bootstrap)
        jobs = [f"job_backlog_{uuid.uuid4().hex[:6]}_{i}" for i in range(40)]
        for job in jobs:
            for e in a_job(job, videos=15):
                monitor.send(job, e)
        monitor.flush()
        bridge = Bridge("--insecure-no-auth", "--group-id", "late-" + uuid.uuid4().hex[:6], kafka=kafka.bootstrap)
        answers = []
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                status, body, _ = http_get(bridge.admin_url + "/readyz", timeout=1)
            except OSError:
                time.sleep(0.02)
                continue
            answers.append((status, body))
            if status == 200:
                break
            time.sleep(0.02)
        assert answers and answers[-1][0] == 200, answers[-3:]
        # At its first "ready", every job of the backlog is there, complete.
        states = [(job_state(bridge, job) or {}).get("state") for job in jobs]
        assert states == ["completed"] * len(jobs), states
        not_ready = [body for status, body in answers if status == 503]
        print(f"\n{len(not_ready)} answers 503 before ready")
        assert all(b"ingest" in body for body in not_ready), not_ready[:1]
    finally:
        if bridge is not None:
            assert bridge.stop()[0] == 0
        kafka.stop()

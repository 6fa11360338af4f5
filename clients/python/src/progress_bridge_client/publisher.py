"""Publishes progress events to Kafka as the bridge expects them: key = job_id (a job's events stay in one partition,
in order), JSON value, a `traceparent` header, each event validated against the contract before it is sent."""
import json

from confluent_kafka import Producer

from .contract import Contract
from .trace import new_traceparent, parse_traceparent


class ProgressPublisher:
    """`bootstrap_servers` or a whole librdkafka `config`; `contract`: a `Contract` (default: the packaged schemas).

    Delivery is asynchronous (librdkafka batches); `flush()` waits for every outstanding event and returns how many
    were not delivered. Failed deliveries are kept in `failures` (key, error)."""

    def __init__(self, bootstrap_servers=None, topic="progress.events", config=None, contract=None):
        settings = {"enable.idempotence": True, "acks": "all", "linger.ms": 5, **(config or {})}
        if bootstrap_servers:
            settings["bootstrap.servers"] = bootstrap_servers
        self.producer = Producer(settings)
        self.topic = topic
        self.contract = contract or Contract()
        self.failures = []

    def _delivered(self, error, message):
        if error is not None:
            self.failures.append((message.key(), error))

    def publish(self, event, traceparent=None, validate=True):
        """Validates `event` (raises InvalidEvent, sending nothing) and queues it, key = its job_id, with `traceparent`
        (a well-formed one given, else a new trace). Returns the traceparent sent."""
        if validate:
            self.contract.check_event(event)
        trace = parse_traceparent(traceparent) or new_traceparent()
        self.publish_raw(event["job_id"], json.dumps(event, separators=(",", ":")), headers=[("traceparent", trace.encode())])
        return trace

    def publish_raw(self, key, value, headers=None, partition=None):
        """Queues a record as given, without validation — for replays and tests (the bridge dead-letters what the
        contract refuses)."""
        arguments = {"key": key, "value": value, "headers": headers, "on_delivery": self._delivered}
        if partition is not None:
            arguments["partition"] = partition
        while True:
            try:
                self.producer.produce(self.topic, **arguments)
                break
            except BufferError:
                self.producer.poll(0.1)  # librdkafka's queue is full: let deliveries drain, then retry
        self.producer.poll(0)

    def flush(self, timeout=30.0):
        """Waits for every queued event; returns how many are still not delivered."""
        return self.producer.flush(timeout)

"""The command topic, for the monitor: job commands the bridge relayed (pause, resume, cancel, create) as an
iterator. At least once: a command's offset is committed after the loop body that handled it, and a command_id
already handled (a retry that another replica published again) is skipped."""
import collections
import dataclasses
import json
import logging

from confluent_kafka import Consumer

from .contract import Contract, InvalidEvent
from .trace import parse_traceparent

log = logging.getLogger("progress_bridge_client")


@dataclasses.dataclass(frozen=True)
class Command:
    """One command: `type` is job.create, job.pause, job.resume or job.cancel."""
    command_id: str
    type: str
    job_id: str
    data: dict
    requested_at: str
    requested_by: str | None
    idempotency_key: str | None
    traceparent: str | None


class CommandConsumer:
    """Iterates over the commands of `topic` for consumer group `group_id` (the monitor's). Invalid records are
    logged and skipped; repeated command_ids (the last `remember` of them) are skipped.

        for command in CommandConsumer("kafka:9092", "progress-monitor"):
            if command.type == "job.pause": ...   # then publish the job's state change as events
    """

    def __init__(self, bootstrap_servers=None, group_id="progress-monitor", topic="progress.commands", config=None, contract=None,
                 remember=10_000, poll_timeout=1.0):
        settings = {"group.id": group_id, "auto.offset.reset": "earliest", "enable.auto.commit": False, **(config or {})}
        if bootstrap_servers:
            settings["bootstrap.servers"] = bootstrap_servers
        self.consumer = Consumer(settings)
        self.consumer.subscribe([topic])
        self.contract = contract or Contract()
        self.poll_timeout = poll_timeout
        self._seen = collections.OrderedDict()
        self._remember = remember
        self._pending = None

    def poll(self, timeout=None):
        """The next command, or None when none arrived within `timeout` seconds. Commits what the previous call
        returned: call it again only once that command is handled (iterating does this for you)."""
        self._commit_pending()
        message = self.consumer.poll(self.poll_timeout if timeout is None else timeout)
        if message is None:
            return None
        if message.error():
            log.warning("command topic: %s", message.error())
            return None
        self._pending = message
        try:
            record = json.loads(message.value())
            self.contract.check_command(record)
        except (ValueError, InvalidEvent) as error:
            log.warning("command record skipped (offset %s): %s", message.offset(), error)
            return None
        if record["command_id"] in self._seen:
            log.info("command %s seen before; skipped", record["command_id"])
            return None
        self._seen[record["command_id"]] = True
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        headers = dict(message.headers() or [])
        return Command(command_id=record["command_id"], type=record["type"], job_id=record["job_id"], data=record["data"],
                       requested_at=record["requested_at"], requested_by=record["requested_by"],
                       idempotency_key=record["idempotency_key"], traceparent=parse_traceparent(headers.get("traceparent")))

    def __iter__(self):
        while True:
            command = self.poll()
            if command is None:
                continue
            try:
                yield command
            except GeneratorExit:
                # The loop ended inside its body (an exception, a break): this command was not handled, so its offset
                # is not committed — it comes again after a restart.
                self._pending = None
                raise

    def _commit_pending(self):
        if self._pending is not None:
            self.consumer.commit(message=self._pending, asynchronous=False)
            self._pending = None

    def close(self):
        """Commits the last command handed out and leaves the group."""
        self._commit_pending()
        self.consumer.close()

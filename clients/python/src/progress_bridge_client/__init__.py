"""progress-bridge's client for the progress monitor: build contract v1 events, validate them against the
contract's JSON Schemas, publish them to Kafka (key = job id, per-job seq, traceparent header), and consume the
command topic (pause, resume, cancel, create) as an iterator."""
from .commands import Command, CommandConsumer
from .contract import Contract, InvalidEvent
from .events import EventBuilder, new_event_id, timestamp
from .publisher import ProgressPublisher
from .trace import new_traceparent, parse_traceparent

__all__ = ["Command", "CommandConsumer", "Contract", "EventBuilder", "InvalidEvent", "ProgressPublisher", "new_event_id",
           "new_traceparent", "parse_traceparent", "timestamp"]

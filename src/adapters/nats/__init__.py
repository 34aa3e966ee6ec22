"""The JetStream event bus: streams, idempotent publishing and pull consumers over nats-py."""

from adapters.nats.broker import JetStreamBroker

__all__ = ["JetStreamBroker"]

"""Acknowledgements the processor waits for before a checkpoint may go ahead.

Every output message, dead letter and snapshot record carries a delivery callback, and a
checkpoint waits until each one it covers is acknowledged. Only the last message of a
partition would not do: librdkafka splits one partition's messages into several produce
requests (`batch.size`, `batch.num.messages`), and a request the broker refuses for good (a
record batch over the topic's `max.message.bytes`, an invalid record) fails only its own
messages, while a later request to the same partition succeeds, with idempotence on or off.
The callback costs about 1-3 µs per message (measured against a local broker, within the noise
of producing it). Messages never time out (`message.timeout.ms` 0), so a broker outage holds
outputs back instead of failing them; a failure the producer cannot recover from is a fatal
error, which the processor also watches.
"""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import KafkaError, Message

DeliveryCallback = Callable[[KafkaError | None, Message], None]


class Deliveries:
    """The acknowledgements awaited for one set of produced messages: the outputs of one
    checkpoint interval, or one checkpoint's snapshots."""

    def __init__(self) -> None:
        self.awaiting = 0
        self.error: KafkaError | None = None

    def track(self) -> DeliveryCallback:
        """The `on_delivery` callback of one more message to wait for."""
        self.awaiting += 1
        return self._delivered

    def track_many(self, count: int) -> DeliveryCallback:
        """The `on_delivery` callback of `count` more messages (one bound method for all)."""
        self.awaiting += count
        return self._delivered

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        self.awaiting -= 1
        if error is not None and self.error is None:
            self.error = error

    @property
    def done(self) -> bool:
        return self.awaiting == 0

"""Acknowledgements the processor waits for before a checkpoint may go ahead.

librdkafka delivers (and reports) the messages of one partition in order when the producer is
idempotent or has one request in flight, which `streaming.runtime.clients` ensures. So the
acknowledgement of the last message produced to a partition covers every message before it,
and a whole interval's outputs are acknowledged once the last message of each (produce call,
partition) is: the processor asks for delivery reports on those messages only, instead of on
every message (a Python callback per message would cost about 2 µs, as much as the rest of
producing it). Messages never time out (`message.timeout.ms` 0), so an earlier message of a
partition cannot fail silently while a later one succeeds; a failure the producer cannot
recover from is a fatal error, which the processor also watches.
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

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        self.awaiting -= 1
        if error is not None and self.error is None:
            self.error = error

    @property
    def done(self) -> bool:
        return self.awaiting == 0

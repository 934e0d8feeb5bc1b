"""What a checkpoint waits for: the last message to each partition, and any failure."""

from __future__ import annotations

from typing import Any, cast

from confluent_kafka import KafkaError, Message

from streaming.runtime.deliveries import Deliveries
from streaming.runtime.processor import StreamProcessor

MESSAGE = cast(Message, None)  # the callback ignores the message


def test_done_only_when_every_tracked_message_is_acknowledged() -> None:
    deliveries = Deliveries()
    assert deliveries.done  # nothing produced: nothing to wait for
    callbacks = [deliveries.track() for _ in range(3)]
    for callback in callbacks[:2]:
        callback(None, MESSAGE)
        assert not deliveries.done
    callbacks[2](None, MESSAGE)
    assert deliveries.done and deliveries.error is None


def test_a_failed_delivery_is_kept_even_after_later_successes() -> None:
    deliveries = Deliveries()
    first, second = deliveries.track(), deliveries.track()
    failure = KafkaError(KafkaError._MSG_TIMED_OUT)
    first(failure, MESSAGE)
    second(None, MESSAGE)
    assert deliveries.done
    assert deliveries.error is not None and deliveries.error.code() == KafkaError._MSG_TIMED_OUT


def test_tails_are_the_last_message_to_each_partition() -> None:
    # messages to partitions 3, 1, 3, 2, 1 (in produce order): the last to 3 is #2, to 1 is #4,
    # to 2 is #3
    tails = StreamProcessor._tails([3, 1, 3, 2, 1])
    assert tails == {2, 3, 4}
    topic_partitions: list[Any] = [("FA", 0), ("FI", 0), ("FA", 0)]
    assert StreamProcessor._tails(topic_partitions) == {1, 2}
    assert StreamProcessor._tails([]) == set()

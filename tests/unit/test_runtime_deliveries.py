"""What a checkpoint waits for: every tracked message, and any failure among them."""

from __future__ import annotations

from typing import cast

from confluent_kafka import KafkaError, Message

from streaming.runtime.deliveries import Deliveries

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


def test_a_batch_counted_at_once_is_done_after_its_last_acknowledgement() -> None:
    deliveries = Deliveries()
    callback = deliveries.track_many(3)  # one bound callback for the batch's three messages
    callback(None, MESSAGE)
    callback(KafkaError(KafkaError._MSG_TIMED_OUT), MESSAGE)
    assert not deliveries.done
    callback(None, MESSAGE)
    assert deliveries.done
    assert deliveries.error is not None and deliveries.error.code() == KafkaError._MSG_TIMED_OUT

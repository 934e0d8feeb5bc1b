"""The dead-letter topic: every rejected message with its reason and origin, counted."""

from __future__ import annotations

import base64
import time
from collections import Counter

import orjson
from confluent_kafka import Producer

from streaming.runtime.deliveries import Deliveries
from streaming.runtime.records import DeadLetter


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode("ascii")


class DeadLetterSink:
    """Produces dead letters as JSON to one topic, keyed by `source topic|partition|offset`."""

    def __init__(self, producer: Producer, topic: str, processor: str) -> None:
        self._producer = producer
        self.topic = topic
        self.processor = processor
        self.counts: Counter[str] = Counter()

    def send(self, letters: list[DeadLetter], deliveries: Deliveries | None = None) -> None:
        """Queue `letters`; each one's acknowledgement is awaited through `deliveries` (their
        partitions are the partitioner's choice, so every letter is tracked)."""
        now = int(time.time() * 1000)
        for letter in letters:
            self.counts[letter.reason.split(":")[0]] += 1
            body = {
                "reason": letter.reason,
                "processor": self.processor,
                "topic": letter.topic,
                "partition": letter.partition,
                "offset": letter.offset,
                "key": _text(letter.key),
                "value": _text(letter.value),
                "rejected_at_ms": now,
            }
            self._producer.produce(
                self.topic,
                key=f"{letter.topic}|{letter.partition}|{letter.offset}",
                value=orjson.dumps(body),
                on_delivery=deliveries.track() if deliveries is not None else None,
            )
        self._producer.poll(0)

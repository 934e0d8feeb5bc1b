"""Operator checkpoints on a compacted topic, keyed `group|topics|partition`.

Kafka's offset-commit metadata could carry this state, but some brokers (Tansu) drop it; a topic
works everywhere. The processor writes a checkpoint (and awaits its acknowledgement) before
committing offsets, so a checkpoint is never older than the committed offsets it goes with.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from streaming.runtime.deliveries import DeliveryCallback
from streaming.settings import KafkaSettings

MARKER_PREFIX = "__braid_read_marker__|"


def checkpoint_key(group: str, topics: tuple[str, ...], partition: int) -> str:
    return f"{group}|{','.join(topics)}|{partition}"


class CheckpointStore:
    def __init__(self, kafka: KafkaSettings, producer: Producer, topic: str) -> None:
        self._kafka = kafka
        self._producer = producer
        self.topic = topic

    def write(self, key: str, state: dict[str, Any],
              on_delivery: DeliveryCallback | None = None) -> None:
        """Queue a checkpoint; the caller awaits its acknowledgement before committing offsets."""
        self._producer.produce(self.topic, key=key, value=orjson.dumps(state),
                               on_delivery=on_delivery)

    def load(self, keys: set[str], timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
        """The latest checkpoint for each of `keys`.

        Reads each partition from its start until a marker this call wrote to its end: a
        broker's reported high watermark can lag (Tansu's does), a marker cannot.
        """
        consumer = Consumer(
            {
                **self._kafka.client_config(),
                "group.id": f"braid-checkpoint-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        found: dict[str, dict[str, Any]] = {}
        try:
            meta = consumer.list_topics(self.topic, timeout=10).topics[self.topic]
            if meta.error is not None:
                raise RuntimeError(f"checkpoint topic {self.topic}: {meta.error}")
            marker = f"{MARKER_PREFIX}{uuid.uuid4().hex}".encode()
            for p in meta.partitions:
                self._producer.produce(self.topic, key=marker, value=None, partition=p)
            self._producer.flush(10)
            consumer.assign([TopicPartition(self.topic, p, 0) for p in meta.partitions])
            pending = set(meta.partitions)
            deadline = time.monotonic() + timeout_s
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading checkpoints from {self.topic} timed out")
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error() is not None:
                    raise RuntimeError(f"reading checkpoints: {msg.error()}")
                raw_key = msg.key() or b""
                if raw_key == marker:
                    pending.discard(msg.partition())
                    continue
                key = raw_key.decode()
                if key in keys:
                    value = msg.value()
                    if value is None:
                        found.pop(key, None)
                    else:
                        found[key] = orjson.loads(value)
        finally:
            consumer.close()
        return found

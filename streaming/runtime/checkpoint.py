"""Operator checkpoints on a compacted topic, keyed `group|topics|partition`.

Kafka's offset-commit metadata could carry small state, but it is capped
(`offset.metadata.max.bytes`, 4 KiB by default) and some brokers drop it; a topic works
everywhere. The processor writes a checkpoint (and awaits its acknowledgement) before
committing offsets, so a checkpoint is never older than the committed offsets it goes with.

A checkpoint larger than `max_record_bytes` (brokers refuse records over ~1 MB by default; the
indicator processor's holds ~40 kB of candle history per pair and duration) is written in
chunks keyed `<key>#<slot>#<i>` followed by a small head under `<key>` naming the slot, the chunk
count and a nonce the chunks carry. Consecutive large checkpoints of a key alternate between
slots `a` and `b`, and the head also names the previous write, so a head whose chunks did not
all land (possible only when the checkpoint topic has several partitions) falls back to the
previous checkpoint, which its offsets were committed with. The acknowledgement the caller
awaits comes once every chunk and the head are acknowledged. Chunk keys are bounded (two slots
times the most chunks a key ever needed), so the compacted topic stays bounded.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from streaming.runtime.deliveries import DeliveryCallback
from streaming.settings import KafkaSettings

MARKER_PREFIX = "__braid_read_marker__|"
CHUNKS_FIELD = "__braid_chunks__"  # a head's field: the chunked write it stands for
MAX_RECORD_BYTES = 512 * 1024  # larger checkpoints are written in chunks of this size
_NONCE_BYTES = 32  # a chunk's value: the nonce (hex), then its part of the JSON


def checkpoint_key(group: str, topics: tuple[str, ...], partition: int) -> str:
    return f"{group}|{','.join(topics)}|{partition}"


class CheckpointStore:
    """Writes and loads checkpoints on `topic`, through the processor's producer."""

    def __init__(self, kafka: KafkaSettings, producer: Producer, topic: str,
                 max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._kafka = kafka
        self._producer = producer
        self.topic = topic
        self.max_record_bytes = max_record_bytes
        # per key, the last chunked write (slot, count, nonce), written or loaded
        self._last_chunked: dict[str, dict[str, Any]] = {}

    def write(self, key: str, state: dict[str, Any],
              on_delivery: DeliveryCallback | None = None) -> None:
        """Queue a checkpoint; the caller awaits its acknowledgement before committing offsets
        (`on_delivery` is called once, when every record of it is acknowledged)."""
        value = orjson.dumps(state)
        if len(value) <= self.max_record_bytes:
            self._last_chunked.pop(key, None)  # a fallback must never skip this one
            self._producer.produce(self.topic, key=key, value=value, on_delivery=on_delivery)
            return
        size = self.max_record_bytes
        parts = [value[i:i + size] for i in range(0, len(value), size)]
        previous = self._last_chunked.get(key)
        slot = "b" if previous is not None and previous["slot"] == "a" else "a"
        nonce = uuid.uuid4().hex
        current = {"slot": slot, "count": len(parts), "nonce": nonce}
        self._last_chunked[key] = current
        callback = _joined(on_delivery, len(parts) + 1) if on_delivery is not None else None
        for i, part in enumerate(parts):
            self._produce(f"{key}#{slot}#{i}", nonce.encode() + part, callback)
        head = {CHUNKS_FIELD: {"current": current, "previous": previous}}
        self._produce(key, orjson.dumps(head), callback)

    def _produce(self, key: str, value: bytes, callback: DeliveryCallback | None) -> None:
        while True:
            try:
                self._producer.produce(self.topic, key=key, value=value, on_delivery=callback)
                return
            except BufferError:  # local queue full: let librdkafka drain it
                self._producer.poll(0.1)

    def load(self, keys: set[str], timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
        """The latest checkpoint for each of `keys`.

        Reads each partition from its start until a marker this call wrote to its end: a
        high watermark read before the call can be stale by the time it is reached, a marker
        cannot.
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
        chunks: dict[str, bytes] = {}  # latest value of each chunk key of `keys`
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
                key = raw_key.decode(errors="replace")
                value = msg.value()
                if key in keys:
                    if value is None:
                        found.pop(key, None)
                    else:
                        found[key] = orjson.loads(value)
                elif "#" in key and key.rsplit("#", 2)[0] in keys:
                    if value is None:
                        chunks.pop(key, None)
                    else:
                        chunks[key] = value
        finally:
            consumer.close()
        for key, state in list(found.items()):
            self._last_chunked.pop(key, None)
            if CHUNKS_FIELD in state:
                found[key] = self._assemble(key, state[CHUNKS_FIELD], chunks)
        return found

    def _assemble(self, key: str, head: dict[str, Any], chunks: dict[str, bytes]
                  ) -> dict[str, Any]:
        """The state a head stands for: its current write, else (its chunks did not all land)
        the previous one."""
        for write in (head["current"], head.get("previous")):
            if write is None:
                continue
            nonce = str(write["nonce"]).encode()
            parts = [chunks.get(f"{key}#{write['slot']}#{i}") for i in range(int(write["count"]))]
            if all(p is not None and p[:_NONCE_BYTES] == nonce for p in parts):
                self._last_chunked[key] = write
                return orjson.loads(b"".join(p[_NONCE_BYTES:] for p in parts))  # type: ignore[index]
        raise RuntimeError(f"checkpoint {key} in {self.topic}: its chunks are missing")


def _joined(callback: DeliveryCallback, count: int) -> DeliveryCallback:
    """One callback for `count` messages: `callback` once, after the last acknowledgement,
    with the first error if any."""
    remaining = [count]
    errors: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(error)
        remaining[0] -= 1
        if remaining[0] == 0:
            callback(errors[0] if errors else None, message)

    return on_delivery

"""Read a whole topic back (tests, replays, the consistency check)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, TopicPartition

from streaming.settings import KafkaSettings


def read_topic(
    kafka: KafkaSettings, topic: str, *, settle_s: float = 1.0, timeout_s: float = 120.0
) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Every message of `topic` as (partition, offset, key, value), in partition/offset order.

    Reads until every partition reported its end and then no message came for `settle_s`
    (a broker's end-of-partition signal can come early when its high watermark lags).
    """
    consumer = Consumer({
        **kafka.client_config(),
        "group.id": f"braid-reader-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })
    out: list[tuple[int, int, bytes | None, bytes | None]] = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise RuntimeError(f"topic {topic}: {meta.error}")
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        pending = set(meta.partitions)
        deadline = time.monotonic() + timeout_s
        last_message = time.monotonic()
        while time.monotonic() < deadline:
            messages = consumer.consume(10_000, 0.2)
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        continue
                    raise RuntimeError(f"reading {topic}: {err}")
                where = (int(msg.partition() or 0), int(msg.offset() or 0))
                out.append((*where, msg.key(), msg.value()))
                last_message = time.monotonic()
            if not pending and time.monotonic() - last_message >= settle_s:
                break
        else:
            raise TimeoutError(f"reading {topic} did not finish in {timeout_s} s")
    finally:
        consumer.close()
    out.sort(key=lambda m: (m[0], m[1]))
    return out

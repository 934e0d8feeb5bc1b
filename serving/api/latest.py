"""The latest record per key of a prediction topic, followed on a background thread.

`GET /predict/{pair}` and `GET /alerts/{client}` answer from here: the API assigns itself every
partition of `predictions.markets` / `predictions.sensors` from `lookback` ago
(`offsets_for_times`; no consumer group, nothing committed) and keeps, per pair or client, the
record with the latest event time (a replayed duplicate carries the same values).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import structlog
from confluent_kafka import Consumer, KafkaError, TopicPartition

from streaming.runtime.clients import consume_available
from streaming.settings import KafkaSettings

log = structlog.get_logger(__name__)


class LatestByKey:
    """Per value of `key_field`, the record with the largest `time_field`."""

    def __init__(self, kafka: KafkaSettings, topic: str, *, key_field: str, time_field: str,
                 lookback_ms: int) -> None:
        self.topic = topic
        self.key_field = key_field
        self.time_field = time_field
        self.latest: dict[str, dict[str, Any]] = {}
        self._consumer = Consumer({
            **kafka.client_config(), "group.id": "braid-api-unused",
            "enable.auto.commit": False, "enable.partition.eof": True,
        })
        meta = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise RuntimeError(f"topic {topic} not found on {kafka.bootstrap_servers}")
        since = int(time.time() * 1000) - lookback_ms
        wanted = [TopicPartition(topic, p, since) for p in meta.partitions]
        starts = self._consumer.offsets_for_times(wanted, timeout=10)
        # -1: nothing after `since` in that partition: start at its end
        self._consumer.assign([TopicPartition(topic, tp.partition,
                                              tp.offset if tp.offset >= 0 else -1)
                               for tp in starts])
        self._waiting_for_end = {tp.partition for tp in starts}
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"follow-{topic}", daemon=True)

    def start(self) -> LatestByKey:
        self._thread.start()
        return self

    def get(self, key: str) -> dict[str, Any] | None:
        return self.latest.get(key)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                # not consume(1000, 0.2): it waits for 1,000 messages or 200 ms
                for message in consume_available(self._consumer, 1000, 0.2):
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            self._waiting_for_end.discard(int(message.partition() or 0))
                            if not self._waiting_for_end:
                                self.caught_up.set()
                        continue
                    self._take(message.value())
        finally:
            self._consumer.close()

    def _take(self, raw: bytes | None) -> None:
        try:
            record = orjson.loads(raw or b"")
            key, stamp = record[self.key_field], record[self.time_field]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("unreadable record skipped", topic=self.topic)
            return
        held = self.latest.get(str(key))
        if held is None or stamp >= held[self.time_field]:
            self.latest[str(key)] = record

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

"""The trades service: pulls trades from a :class:`TradeSource` and publishes them to Kafka.

Every row is validated with the rules of :class:`features.schemas.trade.Trade` (applied to whole
columns at once). A valid trade goes to topic ``trades`` as the JSON of ``Trade.to_wire()``
(``{"v": 1, "pair": ..., ...}``), keyed by its pair, on the partition Braid computes with
:func:`streaming.partitioning.partition_for` (never the client's default partitioner). A row that
fails goes to ``dead_letter`` as ``{"reason", "source", "row"}`` and is never sent to ``trades``;
input the source could not read as a trade at all (a WebSocket frame that is not JSON, a trade of
a frame with a missing or mistyped field: :meth:`TradeSource.take_rejects`) goes there as
``{"reason", "source", "raw"}``, and the source reads on.

The producer is idempotent (no duplicates from its own retries), lingers ~5 ms and compresses
with lz4. On exit, on SIGTERM and on Ctrl-C the source is closed and the producer flushed, so
every trade read before the stop is delivered; the summary counts what the broker acknowledged.

End of input: with ``close_windows_at_end``, a source that ends by itself (a file replay, a
REST backfill with an end, ``max_trades`` reached; not a stop) is followed by one
``end_of_input`` window closure record per pair published (`features.schemas.window_closure`),
through the pair's largest event time, on the pair's partition: the last windows of a history
then close in the stream, and the batch layer reading the topic applies the same records. A
later trade of such a window is late in both engines.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import structlog
from confluent_kafka import KafkaError, Message, Producer
from tqdm import tqdm

from features.schemas.trade import TRADE_SCHEMA_VERSION, invalid_trade_rows
from features.schemas.window_closure import ClosureRule, WindowClosure
from streaming.partitioning import partition_for
from streaming.runtime.clients import producer_config
from streaming.runtime.log_summary import IntervalSummary
from streaming.settings import KafkaSettings, TopicSettings
from streaming.sources.base import TradeSource
from streaming.topics import DEAD_LETTER, TRADES, TopicSpec, catalogue, ensure_topics

log = structlog.get_logger(__name__)

def raw_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON can carry it: non-finite floats become ``"nan"``, ``"inf"``, ``"-inf"``."""
    return {k: repr(v) if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in row.items()}


# ---------------------------------------------------------------- publishing


@dataclass
class PublishSummary:
    """What a run did. ``sent``: trades the broker acknowledged; ``rejected``: dead letters."""

    read: int = 0
    sent: int = 0
    rejected: int = 0
    failed: int = 0
    elapsed_s: float = 0.0

    @property
    def trades_per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


class TradesService:
    """Publishes the trades of ``source`` (see the module docstring for the semantics)."""

    def __init__(
        self,
        source: TradeSource,
        kafka: KafkaSettings | None = None,
        *,
        topic_settings: TopicSettings | None = None,
        trades_topic: str = TRADES,
        dead_letter_topic: str = DEAD_LETTER,
        progress: bool = True,
        flush_timeout_s: float = 30.0,
        producer_factory: Callable[[dict[str, object]], Producer] = Producer,
        close_windows_at_end: bool = False,
    ) -> None:
        self.source = source
        self.kafka = kafka or KafkaSettings()
        self.topic_settings = topic_settings or TopicSettings()
        self.trades_topic = trades_topic
        self.dead_letter_topic = dead_letter_topic
        self.progress = progress
        self.flush_timeout_s = flush_timeout_s
        self.producer_factory = producer_factory
        self.close_windows_at_end = close_windows_at_end
        self.summary = PublishSummary()
        self.latest_event_ms: dict[str, int] = {}  # pair -> largest event time published
        self._stop = threading.Event()
        self._partitions: dict[str, int] = {}  # pair -> partition of the trades topic
        self._trade_partitions = 0  # partition counts, read from the broker when run starts
        self._dead_letter_partitions = 0
        self._rejects = IntervalSummary(log.warning, "rejected trades",
                                        tags={"source": source.name})

    def stop(self) -> None:
        """Stop after the current batch (the SIGTERM handler calls this)."""
        self._stop.set()
        self.source.close()

    def topic_specs(self) -> list[TopicSpec]:
        """The catalogue's ``trades`` and ``dead_letter`` specs, under this service's names."""
        specs = {s.name: s for s in catalogue(self.topic_settings)}
        return [
            dataclasses.replace(specs[TRADES], name=self.trades_topic),
            dataclasses.replace(specs[DEAD_LETTER], name=self.dead_letter_topic),
        ]

    def run(self, max_trades: int | None = None, total: int | None = None) -> PublishSummary:
        """Publish until the source ends, ``max_trades`` rows were read, or a stop. Rejected
        rows go to the dead-letter topic one by one and to the log as one summary line every
        10 s (counts by rule, the latest of each), not a line each."""
        ensure_topics(self.kafka, self.topic_specs(), self.topic_settings)
        producer = self.producer_factory(producer_config(self.kafka))
        metadata = producer.list_topics(timeout=10).topics
        self._trade_partitions = len(metadata[self.trades_topic].partitions)
        self._dead_letter_partitions = len(metadata[self.dead_letter_topic].partitions)
        previous = self._install_sigterm()
        started = time.perf_counter()
        bar = tqdm(total=max_trades or total, unit="trade", disable=not self.progress,
                   desc=f"{self.source.name} -> {self.trades_topic}")
        try:
            for batch in self.source.batches():
                if max_trades is not None:
                    batch = batch.slice(0, max_trades - self.summary.read)
                self._publish(producer, batch)
                self._publish_rejects(producer)
                bar.update(batch.num_rows)
                producer.poll(0)
                if self._stop.is_set() or (
                    max_trades is not None and self.summary.read >= max_trades
                ):
                    break
            if self.close_windows_at_end and not self._stop.is_set():
                self._publish_end_of_input(producer)
        finally:
            self.source.close()
            self._publish_rejects(producer)
            left = producer.flush(self.flush_timeout_s)
            bar.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            self.summary.elapsed_s = time.perf_counter() - started
            self._rejects.flush()
            if left:
                log.error("messages not delivered at exit", undelivered=left)
            log.info("published", source=self.source.name, read=self.summary.read,
                     sent=self.summary.sent, rejected=self.summary.rejected,
                     failed=self.summary.failed,
                     trades_per_s=round(self.summary.trades_per_s))
        return self.summary

    def _publish(self, producer: Producer, batch: pa.Table) -> None:
        if batch.num_rows == 0:
            return
        self.summary.read += batch.num_rows
        reasons = invalid_trade_rows(batch)
        bad = np.flatnonzero(reasons != None)  # noqa: E711 - element-wise comparison
        if len(bad):
            rejected = batch.take(pa.array(bad)).to_pylist()
            for row, reason in zip(rejected, reasons[bad], strict=True):
                self._dead_letter(producer, row, str(reason))
            batch = batch.filter(pa.array(reasons == None))  # noqa: E711
        for row in batch.to_pylist():
            pair = row["pair"]
            if row["timestamp_ms"] > self.latest_event_ms.get(pair, 0):
                self.latest_event_ms[pair] = row["timestamp_ms"]
            partition = self._partition_of(pair)
            value = orjson.dumps({"v": TRADE_SCHEMA_VERSION, **row})
            self._produce(producer, self.trades_topic, value, pair.encode(), partition,
                          self._on_trade)

    def _publish_end_of_input(self, producer: Producer) -> None:
        """One end-of-input closure record per pair published, after its trades (same key and
        partition, so it follows them in the pair's arrival order)."""
        now_ms = int(time.time() * 1000)
        for pair, latest in sorted(self.latest_event_ms.items()):
            closure = WindowClosure(closure=ClosureRule.END_OF_INPUT, pair=pair,
                                    through_ms=latest, decided_at_ms=now_ms,
                                    by=f"trades-service:{self.source.name}")
            self._produce(producer, self.trades_topic, closure.to_wire(), pair.encode(),
                          self._partition_of(pair), self._on_closure)
        log.info("closed the input's windows", pairs=sorted(self.latest_event_ms))

    def _on_closure(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.summary.failed += 1
            log.error("closure record not delivered", error=str(err), key=msg.key())

    def _partition_of(self, pair: str) -> int:
        partition = self._partitions.get(pair)
        if partition is None:
            partition = self._partitions[pair] = partition_for(pair, self._trade_partitions)
        return partition

    def _publish_rejects(self, producer: Producer) -> None:
        """Dead-letter what the source could not read (a malformed frame, a broken trade)."""
        for reject in self.source.take_rejects():
            value = orjson.dumps({"reason": reject.reason, "source": self.source.name,
                                  "raw": reject.raw})
            self._produce(producer, self.dead_letter_topic, value, b"",
                          partition_for("", self._dead_letter_partitions), self._on_dead_letter)

    def _dead_letter(self, producer: Producer, row: dict[str, Any], reason: str) -> None:
        self._rejects.add(reason.split(":", 1)[0], f"{row.get('pair')!r}: {reason}")
        key = str(row.get("pair") or "")
        value = orjson.dumps({"reason": reason, "source": self.source.name, "row": raw_row(row)})
        self._produce(producer, self.dead_letter_topic, value, key.encode(),
                      partition_for(key, self._dead_letter_partitions), self._on_dead_letter)

    def _produce(self, producer: Producer, topic: str, value: bytes, key: bytes,
                 partition: int, callback: Callable[[KafkaError | None, Message], None]) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=key, partition=partition,
                                 on_delivery=callback)
                return
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.1)

    def _on_trade(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.summary.sent += 1
        else:
            self.summary.failed += 1
            log.error("trade not delivered", error=str(err), key=msg.key())

    def _on_dead_letter(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.summary.rejected += 1
        else:
            self.summary.failed += 1
            log.error("dead letter not delivered", error=str(err), key=msg.key())

    def _install_sigterm(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            log.info("SIGTERM: flushing and stopping")
            self.stop()

        return signal.signal(signal.SIGTERM, on_sigterm)

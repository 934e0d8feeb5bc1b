"""The markets predictor: final indicator rows -> next-candle direction predictions.

For each final indicator row of the service's candle duration (rows of other durations are
counted and ignored), the operator reads the pair's features from the online store through the
feature service the model was trained on (one Feast call for every pair waiting in a poll),
predicts P(next candle closes higher) with the current champion and publishes

    {pair, window_ms, window_start_ms, window_end_ms, prediction, model_name, model_version,
     feature_service, feature_age_ms}

keyed `pair|window_ms|window_start_ms` (as the candle and the indicator row).

**The race with the online sink.** The indicator row reaches this processor and the online sink
at about the same time, so the online store may not hold the row's candle yet. A prediction is
made only from exactly the candle the row is about: every view of the service must hold a row
whose event time is the row's `window_end_ms`. While a view holds an older row (or none), the
row waits (not blocking the loop: it is retried every `retry_interval_ms` while any row waits,
the processor's poll waiting no longer than that) for up to `feature_wait_ms`.

No prediction, with a counted reason (`counts`; logged as one summary line per 10 s with the
latest row of each reason, not a line per row), never a default:
- `missing`: a view has no row for this candle after the wait (none at all, or an older one:
  the sink is behind or down);
- `stale`: a view's row was older than the view's TTL when the indicator row was published
  (`features.freshness`, the API's rule too; e.g. history replayed through the stream);
- `nan`: a feature is NaN or null (e.g. an indicator still warming up);
- `superseded`: a view already holds a later candle (a backlog, or a replay after a restart:
  the online store keeps only the latest row, so this candle's features are gone);
- `no_model`: no champion loaded yet; `model_error`: the model raised.
These are decisions about good input, so they go to no topic; undecodable rows and rows without
`pair`/`window_*` go to the dead-letter topic with the reason.

**Effectively once.** The committed offset never passes a waiting row, and a replay decides as
the first run did: it reads the same online row (same values, same record, byte for byte:
`feature_age_ms` is the row's Kafka timestamp minus the features' event time, not a wall-clock
reading), or finds a later candle online (`superseded`: no record, the first run's stays). A
replay after the champion moved predicts with the new one: the record says which version.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import orjson
import structlog

from features.entity_keys import foreign_key_reasons
from features.event_time import NO_INGESTION_TIME
from features.freshness import stale_reason
from features.schemas.candle import pair_reason, record_key
from streaming.runtime.log_summary import IntervalSummary
from streaming.runtime.operator import PartitionOperator, Snapshot, process_by_group
from streaming.runtime.records import DeadLetter, Emission, InputBatch, OutputRecord

log = structlog.get_logger(__name__)

NO_ROW = -1  # event time of a view without an online row (serving.online_features.NO_ROW)
_INT64_MAX = int(np.iinfo(np.int64).max)
REASONS = ("missing", "stale", "nan", "superseded", "no_model", "model_error")


class ServiceViewInfo(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def ttl_ms(self) -> int: ...


class FeatureVectors(Protocol):
    @property
    def values(self) -> np.ndarray: ...  # (n, columns) float64
    @property
    def event_ms(self) -> np.ndarray: ...  # (n, views) int64, NO_ROW where none


class OnlineFeatureSource(Protocol):
    """`serving.online_features.FeatureServiceReader`: a feature service read online."""

    @property
    def name(self) -> str: ...
    @property
    def columns(self) -> Sequence[str]: ...
    @property
    def views(self) -> Sequence[ServiceViewInfo]: ...
    def read(self, entities: Sequence[str]) -> FeatureVectors: ...


class Model(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    def predict_proba(self, features: np.ndarray) -> np.ndarray: ...


class ModelSource(Protocol):
    """`serving.models.ModelWatcher`: the current champion, swapped when the alias moves."""

    @property
    def current(self) -> Model | None: ...


@dataclass(frozen=True)
class PredictorConfig:
    output_topic: str
    window_ms: int  # the candle duration of the feature service's views
    feature_wait_ms: int = 2_000
    retry_interval_ms: int = 2  # how often waiting rows read the online store again


@dataclass
class _Row:
    partition: int
    offset: int
    key: bytes | None
    raw: bytes | None
    pair: str
    window_ms: int
    window_start_ms: int
    window_end_ms: int
    ingested_ms: int
    deadline: float  # monotonic seconds


@dataclass
class PredictorGroup:
    """The waiting rows and offsets of every partition one processor owns."""

    config: PredictorConfig
    features: OnlineFeatureSource
    models: ModelSource
    pending: list[_Row] = field(default_factory=list)
    position: dict[int, int] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    stats_interval_s: float = 60.0  # how often the counts are logged
    #: rows without a prediction, logged as one line per 10 s (counts, latest reason of each)
    skipped: IntervalSummary = field(
        default_factory=lambda: IntervalSummary(log.info, "no prediction for rows"))
    _read_failing: bool = False
    _stats_logged: float = field(default_factory=time.monotonic)

    def open(self, partition: int) -> None:
        self.close(partition)

    def close(self, partition: int) -> None:
        """Forget a partition's rows (revocation: its next owner replays them)."""
        self.position.pop(partition, None)
        self.pending = [r for r in self.pending if r.partition != partition]

    def commit_offset(self, partition: int) -> int | None:
        waiting = [r.offset for r in self.pending if r.partition == partition]
        return min(waiting) if waiting else self.position.get(partition)

    def process_many(self, work: Sequence[tuple[int, InputBatch]], now_ms: int) -> Emission:
        emission = Emission()
        deadline = time.monotonic() + self.config.feature_wait_ms / 1000
        for partition, batch in work:
            if not len(batch):
                continue
            self.position[partition] = int(batch.offsets[-1]) + 1
            stamps = batch.timestamps
            for i, raw in enumerate(batch.values):
                offset = int(batch.offsets[i])
                fields, reason = _decode(raw)
                if fields is not None:  # keyed as its candle, on its pair's partition
                    reason = foreign_key_reasons(
                        batch.keys[i:i + 1], [record_key(*fields[:3])], "indicator row")[0]
                    fields = None if reason else fields
                if fields is None:
                    emission.dead_letters.append(DeadLetter(
                        reason or "decode", batch.topic, partition, offset, batch.keys[i], raw))
                    continue
                if fields[1] != self.config.window_ms:
                    self.counts["other_duration"] += 1
                    continue
                ingested = int(stamps[i]) if stamps is not None else NO_INGESTION_TIME
                self.pending.append(_Row(partition, offset, batch.keys[i], raw, str(fields[0]),
                                         int(fields[1]), int(fields[2]), int(fields[3]),
                                         ingested, deadline))
        emission.extend(self.attempt())
        return emission

    def attempt(self) -> Emission:
        """Decide every waiting row whose features are online (or whose wait is over)."""
        emission = Emission()
        self.skipped.maybe_log()
        if not self.pending:
            return emission
        pairs = sorted({r.pair for r in self.pending})
        try:
            vectors = self.features.read(pairs)
        except Exception as error:  # the online store is down: keep waiting, never crash
            if not self._read_failing:
                log.warning("online read failed; rows keep waiting", error=str(error))
            self._read_failing = True
            return emission
        self._read_failing = False
        row_of = {pair: i for i, pair in enumerate(pairs)}
        now = time.monotonic()
        ready: list[tuple[_Row, int]] = []
        waiting: list[_Row] = []
        for row in self.pending:
            i = row_of[row.pair]
            reason = self._judge(row, vectors.event_ms[i], vectors.values[i], now)
            if reason == "wait":
                waiting.append(row)
            elif reason is None:
                ready.append((row, i))
            else:
                self._skip(row, reason)
        self.pending = waiting
        if ready:
            emission.records.extend(self._predict(ready, vectors.values))
        if now - self._stats_logged >= self.stats_interval_s:
            self._stats_logged = now
            log.info("predictor counts", waiting=len(self.pending), **dict(self.counts))
        return emission

    def _judge(self, row: _Row, event_ms: np.ndarray, values: np.ndarray, now: float
               ) -> str | None:
        """None: predict; "wait"; or the reason for no prediction."""
        views = self.features.views
        end = row.window_end_ms
        later = np.flatnonzero(event_ms > end)
        if later.size:
            v = int(later[0])
            return (f"superseded: {views[v].name} already holds the candle ending "
                    f"{int(event_ms[v])}")
        behind = np.flatnonzero(event_ms != end)
        if behind.size:
            if now < row.deadline:
                return "wait"
            v = int(behind[0])
            held = "no row" if event_ms[v] == NO_ROW else f"the candle ending {int(event_ms[v])}"
            return (f"missing: {views[v].name} has {held}, not the candle ending {end}, after "
                    f"waiting {self.config.feature_wait_ms} ms")
        if row.ingested_ms != NO_INGESTION_TIME:  # as of the row's publication
            for v, view in enumerate(views):
                stale = stale_reason(view.name, int(event_ms[v]), row.ingested_ms, view.ttl_ms)
                if stale:
                    return f"{stale} when the row was published"
        nan = np.flatnonzero(np.isnan(values))
        if nan.size:
            columns = self.features.columns
            names = ", ".join(columns[j] for j in nan[:3])
            more = f" and {nan.size - 3} more" if nan.size > 3 else ""
            return f"nan: {names}{more} NaN or null"
        return None

    def _skip(self, row: _Row, reason: str) -> None:
        kind = reason.split(":", 1)[0]
        self.counts[kind] += 1
        self.skipped.add(kind, f"{row.pair} {row.window_end_ms}: {reason}")

    def _predict(self, ready: list[tuple[_Row, int]], values: np.ndarray) -> list[OutputRecord]:
        model = self.models.current  # one reference for the batch: a swap never splits it
        if model is None:
            for row, _ in ready:
                self._skip(row, "no_model: no champion loaded yet")
            return []
        try:
            probability = model.predict_proba(values[[i for _, i in ready]])
        except Exception as error:
            for row, _ in ready:
                self._skip(row, f"model_error: {model.name}/{model.version}: {error}")
            return []
        records = []
        for (row, _), p in zip(ready, probability.tolist(), strict=True):
            body = {
                "pair": row.pair, "window_ms": row.window_ms,
                "window_start_ms": row.window_start_ms, "window_end_ms": row.window_end_ms,
                "prediction": p, "model_name": model.name, "model_version": model.version,
                "feature_service": self.features.name,
                "feature_age_ms": (row.ingested_ms - row.window_end_ms
                                   if row.ingested_ms != NO_INGESTION_TIME else None),
            }
            records.append(OutputRecord(
                self.config.output_topic,
                record_key(row.pair, row.window_ms, row.window_start_ms),
                orjson.dumps(body), row.pair))
        self.counts["predictions"] += len(records)
        return records


def _decode(raw: bytes | None) -> tuple[tuple[str, int, int, int] | None, str | None]:
    if not raw:
        return None, "decode: empty message"
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return None, f"decode: not JSON ({error.msg})"
    if not isinstance(obj, dict):
        return None, "decode: not a JSON object"
    pair = obj.get("pair")
    reason = pair_reason(pair)
    if reason is not None or not isinstance(pair, str):
        return None, reason
    numbers = []
    for name in ("window_ms", "window_start_ms", "window_end_ms"):
        value = obj.get(name)
        if (not isinstance(value, int) or isinstance(value, bool) or value < 0
                or value > _INT64_MAX):
            return None, f"schema: {name} must be a non-negative integer"
        numbers.append(value)
    return (pair, numbers[0], numbers[1], numbers[2]), None


def _groups(operators: Sequence[PartitionOperator]) -> list[PredictorGroup]:
    groups = {id(op.group): op.group for op in operators
              if isinstance(op, MarketsPredictorOperator)}
    return list(groups.values())


class MarketsPredictorOperator(PartitionOperator):
    """One partition's handle on a :class:`PredictorGroup`."""

    def __init__(self, group: PredictorGroup, partition: int) -> None:
        self.group = group
        self.partition = partition
        group.open(partition)

    @classmethod
    def process_many(cls, work: Sequence[tuple[PartitionOperator, InputBatch]],
                     now_ms: int) -> Emission:
        return process_by_group(work, now_ms)

    @classmethod
    def tick_many(cls, operators: Sequence[PartitionOperator], now_ms: int) -> Emission:
        emission = Emission()
        for group in _groups(operators):
            emission.extend(group.attempt())
        return emission

    @classmethod
    def retry_after_s(cls, operators: Sequence[PartitionOperator]) -> float | None:
        waiting = [g.config.retry_interval_ms for g in _groups(operators) if g.pending]
        return min(waiting) / 1000 if waiting else None

    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        return self.group.process_many([(self.partition, batch)], now_ms)

    def close(self) -> None:
        self.group.close(self.partition)

    def commit_offset(self, topic: str) -> int | None:
        return self.group.commit_offset(self.partition)

    def snapshot(self) -> Snapshot:
        return {"version": 1}  # no state: waiting rows are replayed from the committed offset

    def restore(self, snapshot: Snapshot) -> None:
        pass

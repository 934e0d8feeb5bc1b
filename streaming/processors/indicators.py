"""The indicator operator: final candles -> technical indicators, per pair and duration.

It keeps the last `MAX_WARMUP` candles of each (pair, duration) and, for each new candle, runs
`features.indicators.compute_indicators` over that history, so every value sees exactly its
indicator's fixed warm-up, as in the backfill. A candle whose window is not after the last one
seen for its pair (a duplicate left by a restarted candle processor, or a candle replayed after
a restart that the restored history already holds) is ignored: candles of one pair arrive in
window order on one partition.

Checkpoints: the snapshot holds each (pair, duration)'s last `MAX_WARMUP - 1` candles (window
starts and the `INPUT_COLUMNS`, as exact float64 bytes in base64), so offsets are committed up to
everything consumed and a restart replays only what came after the last checkpoint. A pair that
stops trading therefore no longer holds the committed offset back (it used to: offsets were
committed only up to the oldest candle still held, and the history was rebuilt from the log).
The state is bounded by the number of (pair, duration) keys, about 40 kB each in the snapshot.
A version-1 snapshot (offsets only) is still restored: its committed offset is the oldest candle
then held, and candles replayed before its `next_offset` refill the history without being
emitted again.

On the wire an indicator that is not warmed up is `null` (JSON has no NaN); readers map it
back to NaN. It is never 0.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from features.entity_keys import foreign_key_reasons
from features.indicators import INDICATOR_COLUMNS, INPUT_COLUMNS, MAX_WARMUP, compute_indicators
from features.schemas.candle import CANDLE_ARROW_SCHEMA, pair_reason, record_key
from streaming.runtime.operator import PartitionOperator, Snapshot
from streaming.runtime.records import DeadLetter, Emission, InputBatch, OutputRecord

_REQUIRED = tuple(CANDLE_ARROW_SCHEMA.names)


@dataclass
class _History:
    """The latest candles of one (pair, duration), oldest first: window starts and the
    `INPUT_COLUMNS` the indicators read."""

    window_start: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(
        default_factory=lambda: {c: [] for c in INPUT_COLUMNS}
    )

    def append(self, candle: dict[str, float | int | str]) -> None:
        self.window_start.append(int(candle["window_start_ms"]))
        for column in INPUT_COLUMNS:
            self.values[column].append(float(candle[column]))

    def trim(self, keep: int) -> None:
        drop = len(self.window_start) - keep
        if drop > 0:
            del self.window_start[:drop]
            for column in INPUT_COLUMNS:
                del self.values[column][:drop]

    def to_state(self, pair: str, window_ms: int) -> dict[str, Any]:
        """JSON-serialisable, exact: numbers as little-endian 64-bit arrays in base64."""
        return {
            "pair": pair,
            "window_ms": window_ms,
            "window_start_ms": _b64(np.asarray(self.window_start, dtype="<i8")),
            "columns": {c: _b64(np.asarray(self.values[c], dtype="<f8")) for c in INPUT_COLUMNS},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _History:
        starts = np.frombuffer(base64.b64decode(state["window_start_ms"]), dtype="<i8")
        values = {c: np.frombuffer(base64.b64decode(state["columns"][c]), dtype="<f8")
                  for c in INPUT_COLUMNS}
        if any(len(v) != len(starts) for v in values.values()):
            raise ValueError(f"indicator checkpoint of {state['pair']} {state['window_ms']} ms: "
                             "columns of different lengths")
        return cls([int(s) for s in starts], {c: [float(x) for x in v] for c, v in values.items()})


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(array.tobytes()).decode("ascii")


@dataclass
class IndicatorConfig:
    output_topic: str


class IndicatorOperator(PartitionOperator):
    def __init__(self, config: IndicatorConfig, partition: int) -> None:
        self.config = config
        self.partition = partition
        self.histories: dict[tuple[str, int], _History] = {}
        self.position: int | None = None
        self.replay_until = 0

    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        emission = Emission()
        self.position = int(batch.offsets[-1]) + 1
        fresh: dict[tuple[str, int], list[dict[str, float | int | str]]] = {}
        for i, raw in enumerate(batch.values):
            offset = int(batch.offsets[i])
            candle, reason = _decode_candle(raw)
            if candle is not None:  # keyed `pair|window_ms|window_start_ms`, on its partition
                reason = foreign_key_reasons(
                    batch.keys[i:i + 1], [record_key(str(candle["pair"]), int(candle["window_ms"]),
                                                     int(candle["window_start_ms"]))], "candle")[0]
                candle = None if reason else candle
            if candle is None:
                emission.dead_letters.append(DeadLetter(
                    reason or "decode", batch.topic, batch.partition, offset, batch.keys[i], raw))
                continue
            key = (str(candle["pair"]), int(candle["window_ms"]))
            history = self.histories.setdefault(key, _History())
            if history.window_start and int(candle["window_start_ms"]) <= history.window_start[-1]:
                continue  # a duplicate of a candle already in the history
            history.append(candle)
            if offset >= self.replay_until:
                fresh.setdefault(key, []).append(candle)
        for key, candles in fresh.items():
            history = self.histories[key]
            series = {c: np.asarray(v) for c, v in history.values.items()}
            values = compute_indicators(series, start=len(history.window_start) - len(candles))
            for j, candle in enumerate(candles):
                emission.records.append(self._record(candle, values, j))
            history.trim(MAX_WARMUP - 1)
        for key in fresh.keys() ^ self.histories.keys():
            self.histories[key].trim(MAX_WARMUP - 1)
        return emission

    def _record(
        self, candle: dict[str, float | int | str], values: dict[str, np.ndarray], row: int
    ) -> OutputRecord:
        pair, size, start = str(candle["pair"]), int(candle["window_ms"]), int(
            candle["window_start_ms"])
        body: dict[str, object] = {
            "pair": pair,
            "window_ms": size,
            "window_start_ms": start,
            "window_end_ms": int(candle["window_end_ms"]),
            "close": float(candle["close"]),
        }
        for column in INDICATOR_COLUMNS:
            value = float(values[column][row])
            body[column] = None if np.isnan(value) else value
        return OutputRecord(self.config.output_topic, record_key(pair, size, start),
                            orjson.dumps(body), pair)

    def commit_offset(self, topic: str) -> int | None:
        """Everything consumed: the snapshot taken with it holds every history."""
        return self.position

    def snapshot(self) -> Snapshot:
        return {
            "version": 2,
            "next_offset": max(self.position or 0, self.replay_until),
            "histories": [h.to_state(pair, size) for (pair, size), h in self.histories.items()],
        }

    def restore(self, snapshot: Snapshot) -> None:
        self.replay_until = int(snapshot["next_offset"])
        for state in snapshot.get("histories", []):  # version 1 has none: rebuilt from the log
            key = (str(state["pair"]), int(state["window_ms"]))
            self.histories[key] = _History.from_state(state)


def _decode_candle(raw: bytes | None) -> tuple[dict[str, float | int | str] | None, str | None]:
    if raw is None:
        return None, "decode: empty message"
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"decode: not JSON ({exc.msg})"
    if not isinstance(obj, dict):
        return None, "decode: not a JSON object"
    missing = [name for name in _REQUIRED if obj.get(name) is None]
    if missing:
        return None, f"schema: missing field {missing[0]}"
    reason = _wrong_field(obj)
    if reason is not None:
        return None, reason
    return obj, None


_INT64 = np.iinfo(np.int64)


def _wrong_field(obj: dict[str, Any]) -> str | None:
    """The first field of `CANDLE_ARROW_SCHEMA` with a wrong type or value (found by the
    hostile-input tests: a string or list price crashed the operator, a boolean passed as 1)."""
    reason = pair_reason(obj["pair"])
    if reason is not None:
        return reason
    for f in CANDLE_ARROW_SCHEMA:
        value = obj[f.name]
        if pa.types.is_integer(f.type):
            if type(value) is not int or not _INT64.min <= value <= _INT64.max:
                return f"schema: {f.name} must be a 64-bit integer"
        elif pa.types.is_floating(f.type) and (type(value) not in (int, float)
                                               or not math.isfinite(value)):
            return f"schema: {f.name} must be a finite number"
    if obj["window_ms"] <= 0:
        return "schema: window_ms must be positive"
    return None

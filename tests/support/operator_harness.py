"""Drive partition operators in-process (no broker): encode trades, feed batches, collect output.

Used by unit tests of the event-time logic; the integration tests run the same operators on a
real broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import orjson
import pyarrow as pa

from features.windows import TumblingWindow
from streaming.processors.candles import CandleConfig, CandleOperator
from streaming.runtime.operator import PartitionOperator
from streaming.runtime.records import DeadLetter, InputBatch

FAR_FUTURE_MS = 4_000_000_000_000  # year 2096: every window is over by this wall clock


def encode_trades(trades: pa.Table | Iterable[dict[str, object]]) -> list[bytes]:
    rows = trades.to_pylist() if isinstance(trades, pa.Table) else list(trades)
    return [orjson.dumps({"v": 1, **row}) for row in rows]


def candle_operator(windows: Sequence[TumblingWindow], idle_timeout_ms: int = 10_000
                    ) -> CandleOperator:
    return CandleOperator(CandleConfig(tuple(windows), "candles", idle_timeout_ms), 0)


def feed(
    operator: PartitionOperator,
    values: Sequence[bytes | None],
    *,
    first_offset: int = 0,
    batch_size: int = 1000,
    now_ms: int = 0,
    topic: str = "trades",
) -> tuple[dict[str, dict[str, object]], list[DeadLetter], list[str]]:
    """Feed `values` as consecutive offsets; returns (latest value per key, dead letters,
    keys in emission order)."""
    latest: dict[str, dict[str, object]] = {}
    letters: list[DeadLetter] = []
    order: list[str] = []
    for lo in range(0, len(values), batch_size):
        chunk = list(values[lo : lo + batch_size])
        offsets = np.arange(first_offset + lo, first_offset + lo + len(chunk), dtype=np.int64)
        emission = operator.process(InputBatch(topic, 0, offsets, [b"k"] * len(chunk), chunk),
                                    now_ms)
        for record in emission.records:
            latest[record.key] = orjson.loads(record.value)
            order.append(record.key)
        letters.extend(emission.dead_letters)
    return latest, letters, order


def close_all(operator: PartitionOperator) -> dict[str, dict[str, object]]:
    """Tick twice with a far-future wall clock so every quiet window closes on idleness."""
    out: dict[str, dict[str, object]] = {}
    for now in (FAR_FUTURE_MS - 1, FAR_FUTURE_MS + 10**9):
        for record in operator.tick(now).records:
            out[record.key] = orjson.loads(record.value)
    return out

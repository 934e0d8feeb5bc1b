"""Drive partition operators in-process (no broker): encode trades, feed batches, collect output.

Used by unit tests of the event-time logic; the integration tests run the same operators on a
real broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import orjson
import pyarrow as pa

from features.schemas.window_closure import ClosureRule, WindowClosure
from features.windows import NO_STREAM_TIME, TumblingWindow
from streaming.processors.candles import DEFAULT_LIVE_LAG_MS, CandleConfig, CandleOperator
from streaming.runtime.operator import PartitionOperator
from streaming.runtime.records import DeadLetter, InputBatch
from tests.support.entity_keys import entity_keys

FAR_FUTURE_MS = 4_000_000_000_000  # year 2096: every window is over by this wall clock


def encode_trades(trades: pa.Table | Iterable[dict[str, object]]) -> list[bytes]:
    rows = trades.to_pylist() if isinstance(trades, pa.Table) else list(trades)
    return [orjson.dumps({"v": 1, **row}) for row in rows]


def candle_operator(windows: Sequence[TumblingWindow], idle_timeout_ms: int = 10_000,
                    live_lag_ms: int = DEFAULT_LIVE_LAG_MS) -> CandleOperator:
    return CandleOperator(CandleConfig(tuple(windows), "candles", idle_timeout_ms,
                                       live_lag_ms=live_lag_ms, group="test"), 0)


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
        emission = operator.process(InputBatch(topic, 0, offsets, entity_keys(chunk), chunk),
                                    now_ms)
        for record in emission.records:
            latest[record.key] = orjson.loads(record.value)
            order.append(record.key)
        letters.extend(emission.dead_letters)
    return latest, letters, order


def close_all(operator: CandleOperator) -> dict[str, dict[str, object]]:
    """Close every open window as a finished input does: an end-of-input closure record per
    pair, through its stream time, fed after everything else."""
    values: list[bytes | None] = [
        WindowClosure(closure=ClosureRule.END_OF_INPUT, pair=pair, through_ms=int(time)).to_wire()
        for pair, time in zip(operator.pairs, operator.stream_time, strict=True)
        if time != NO_STREAM_TIME]
    out, letters, _ = feed(operator, values, first_offset=operator.position or 0)
    assert not letters, letters
    return out


def tick_and_read_back(operator: CandleOperator, now_ms: int) -> tuple[
        dict[str, dict[str, object]], list[bytes]]:
    """`tick` at `now_ms`, then feed the closure records it wrote back to the operator as its
    next input (what the broker does); returns (candles emitted, closure records)."""
    emission = operator.tick(now_ms)
    assert all(r.topic == "trades" and r.partition == operator.partition
               for r in emission.records), emission.records
    values: list[bytes | None] = [r.value for r in emission.records]
    out, letters, _ = feed(operator, values, first_offset=operator.position or 0,
                           now_ms=now_ms)
    assert not letters, letters
    return out, [r.value for r in emission.records]

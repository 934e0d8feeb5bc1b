"""Window closure records: the rule in `features.windows`, the stream's candle operator and the
batch's per-file aggregation on the same log (no broker, no Spark).

The log is a partition's records in offset order: trades and closure records. The candle
operator consumes it in micro-batches; the batch parses it as Spark's Kafka source hands it over
(`batch.kafka_input`) and aggregates it with `batch.file_results`. Both must keep and drop the
same trades, whatever the closures and the batching.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch.arrival_order import ArrivalOrder
from batch.file_results import CANDLE, LATE, file_results
from batch.kafka_input import parse_kafka_lines, records_as_json_lines
from features.schemas.window_closure import ClosureRule, WindowClosure, parse_closure
from features.windows import (
    CLOSED_BY_LOG,
    LATE_BY_STREAM_TIME,
    NO_STREAM_TIME,
    ON_TIME,
    Closures,
    TumblingWindow,
    closed_until_at,
    lateness,
)
from tests.support.operator_harness import (
    candle_operator,
    close_all,
    encode_trades,
    feed,
    tick_and_read_back,
)

MINUTE = 60_000
GRACE = 5_000
WINDOWS = [TumblingWindow(MINUTE, GRACE), TumblingWindow(5 * MINUTE, GRACE)]
PAIRS = ["XBT/USD", "ETH/USD"]
T0 = 1_767_225_600_000  # 2026-01-01 UTC


def _trade(pair: str, trade_id: int, ts: int, price: float = 100.0) -> dict[str, object]:
    return {"pair": pair, "price": price, "volume": 1.0, "side": "buy", "order_type": "limit",
            "trade_id": trade_id, "timestamp_ms": ts}


def _closure(pair: str, through_ms: int, window_ms: int | None = MINUTE,
             rule: ClosureRule = ClosureRule.IDLE) -> bytes:
    return WindowClosure(closure=rule, pair=pair, window_ms=window_ms, through_ms=through_ms,
                         decided_at_ms=1, by="test").to_wire()


# --- the rule -----------------------------------------------------------------------------------

def test_a_closure_closes_its_pairs_windows_for_the_records_after_it_only() -> None:
    w = TumblingWindow(MINUTE, GRACE)
    keys = np.array([0, 0, 1, 0, 0])
    positions = np.array([10, 12, 13, 14, 15])
    ts = np.array([30_000, 50_000, 40_000, 59_000, 61_000])
    # a closure of key 0 at position 12.5 (between the records at 12 and 13) through 45 s:
    # it closes [0, 60 s) of key 0 only, for records after it
    closures = Closures(np.array([0]), np.array([12]), np.array([MINUTE]), np.array([45_000]))
    closed, closer = closed_until_at(w, keys, positions, ts, np.array([NO_STREAM_TIME] * 2),
                                     closures)
    assert closed.tolist() == [NO_STREAM_TIME, NO_STREAM_TIME, NO_STREAM_TIME, 60_000, 60_000]
    assert closer.tolist() == [-1, -1, -1, 0, -1]  # 61 s is in [60 s, 120 s): not closed
    why = lateness(w, keys, ts, np.array([NO_STREAM_TIME] * 2), closed)
    assert why.tolist() == [ON_TIME, ON_TIME, ON_TIME, CLOSED_BY_LOG, ON_TIME]
    # a closure of another duration closes nothing here; one of every duration does
    other = Closures(np.array([0]), np.array([12]), np.array([5 * MINUTE]), np.array([45_000]))
    assert closed_until_at(w, keys, positions, ts, np.array([NO_STREAM_TIME] * 2),
                           other)[0].max() == NO_STREAM_TIME
    every = Closures(np.array([0]), np.array([12]), np.array([0]), np.array([45_000]))
    assert closed_until_at(w, keys, positions, ts, np.array([NO_STREAM_TIME] * 2),
                           every)[0].tolist() == closed.tolist()


def test_lateness_by_stream_time_is_judged_before_a_closure() -> None:
    w = TumblingWindow(MINUTE, GRACE)
    # stream time reaches 65 s: [0, 60 s) is final by stream time, whatever closed it too
    why = lateness(w, np.array([0, 0]), np.array([65_000, 10_000]), np.array([NO_STREAM_TIME]),
                   np.array([60_000, 60_000]))
    assert why.tolist() == [ON_TIME, LATE_BY_STREAM_TIME]


def test_closure_records_parse_and_a_malformed_one_says_why() -> None:
    record = parse_closure(_closure("XBT/USD", 59_999))
    assert (record.closure, record.pair, record.window_ms, record.through_ms) == (
        ClosureRule.IDLE, "XBT/USD", MINUTE, 59_999)
    # the fields an archive merges into each line are ignored
    merged = orjson.loads(_closure("XBT/USD", 1)) | {"kafka_offset": 3, "kafka_timestamp_ms": 4}
    assert parse_closure(orjson.dumps(merged)).through_ms == 1
    for bad, why in ((b'{"closure": "idle", "pair": "X"}', "through_ms"),
                     (b'{"closure": "nap", "pair": "X", "through_ms": 1}', "closure"),
                     (b'{"closure": "idle", "pair": "X", "through_ms": 1, "extra": 1}', "extra")):
        with pytest.raises(ValueError, match=why):
            parse_closure(bad)


# --- the stream -----------------------------------------------------------------------------------

def test_history_is_never_closed_on_idle_however_long_its_source_pauses() -> None:
    """The issue's case: four minutes of XBT/USD and ETH/USD from six hours ago, one trade a
    second each, delivered in 30-second chunks with a 12-second pause after each, while the
    wall clock ticks. The pauses close nothing: 4 candles of 60 trades per pair."""
    op = candle_operator([TumblingWindow(MINUTE, GRACE)], idle_timeout_ms=10_000)
    now = T0 + 6 * 3_600_000
    start = T0 - T0 % MINUTE
    rows = [_trade(p, i, start + i * 1_000) for i in range(240) for p in PAIRS]
    offset = 0
    candles: dict[str, dict[str, object]] = {}
    for chunk in range(8):
        values = encode_trades(rows[chunk * 60:(chunk + 1) * 60])
        out, letters, _ = feed(op, values, first_offset=offset, now_ms=now)
        assert letters == []
        candles.update(out)
        offset += len(values)
        for _ in range(12):  # a tick a second through the pause
            now += 1_000
            assert op.tick(now).records == []
    candles.update(close_all(op))
    assert sorted(Counter(c["pair"] for c in candles.values()).items()) == [
        ("ETH/USD", 4), ("XBT/USD", 4)]
    assert {c["trade_count"] for c in candles.values()} == {60}


def test_a_live_pair_quiet_for_the_idle_timeout_is_closed_by_a_record_in_the_log() -> None:
    """The same chunks stamped with the wall clock (live): each pause of the last chunk of a
    minute closes that minute through a closure record; a later trade of it is dead-lettered
    naming the rule. The batch, given the same log, drops the same trades."""
    op = candle_operator([TumblingWindow(MINUTE, GRACE)], idle_timeout_ms=10_000)
    start = T0 - T0 % MINUTE
    log: list[bytes] = []
    # 40 s of trades at one a second, then a 30 s pause (the minute ends during it), then a
    # trade of that minute stamped 50 s (delivered late, after the closure) and one of the next
    first = [_trade("XBT/USD", i, start + i * 1_000) for i in range(40)]
    log += encode_trades(first)
    feed(op, log, now_ms=start + 40_000)
    emitted, closures = tick_and_read_back(op, start + MINUTE + GRACE + 1)
    assert list(emitted) == [f"XBT/USD|{MINUTE}|{start}"]
    assert emitted[f"XBT/USD|{MINUTE}|{start}"]["trade_count"] == 40
    log += closures
    after = encode_trades([_trade("XBT/USD", 40, start + 50_000),
                           _trade("XBT/USD", 41, start + MINUTE + 1_000)])
    _, letters, _ = feed(op, after, first_offset=len(log), now_ms=start + MINUTE + 6_000)
    log += after
    assert [(d.offset, d.reason) for d in letters] == [
        (41, "closed on idle: the pair's 1m window was closed by the closure record at "
             "offset 40")]
    stream = emitted | close_all(op)
    log += [_closure("XBT/USD", start + MINUTE + 1_000, None, ClosureRule.END_OF_INPUT)]
    batch, late = batch_candles(log, [TumblingWindow(MINUTE, GRACE)])
    assert batch == stream
    assert late == {MINUTE: 1}


def test_a_malformed_closure_record_is_dead_lettered_and_rejected_by_the_batch() -> None:
    op = candle_operator(WINDOWS)
    log = [*encode_trades([_trade("XBT/USD", 1, T0)]),
           b'{"v": 1, "closure": "idle", "pair": "XBT/USD"}',
           *encode_trades([_trade("XBT/USD", 2, T0 + 1)])]
    _, letters, _ = feed(op, log)
    assert [(d.offset, d.reason.split(":")[0]) for d in letters] == [(1, "schema")]
    assert "through_ms" in letters[0].reason
    parsed = parse_kafka_lines(records_as_json_lines(_records(log)), "kafka:trades/0", 0)
    rejected = [r for r in parsed.to_pylist() if r["reject_reason"]]
    assert [(r["row_number"], "through_ms" in r["reject_reason"]) for r in rejected] == [
        (1, True)]


# --- stream == batch on any log -------------------------------------------------------------------

@st.composite
def logs(draw: st.DrawFn) -> tuple[list[bytes], list[int]]:
    """A partition's log: trades of two pairs in a disorderly arrival (some beyond grace) with
    closure records of either rule and any duration in between; and micro-batch sizes."""
    n = draw(st.integers(20, 200))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    event = T0 + np.cumsum(rng.integers(0, 4_000, n))
    arrival = event + np.where(rng.random(n) < 0.1, rng.integers(0, 200_000, n), 0)
    order = np.argsort(arrival, kind="stable")
    pairs = rng.choice(PAIRS, n)
    log: list[bytes] = []
    seen: dict[str, int] = {}
    for k, i in enumerate(order):
        trade = _trade(str(pairs[i]), int(i), int(event[i]), float(100 + rng.normal()))
        log += encode_trades([trade])
        seen[trade["pair"]] = max(seen.get(trade["pair"], 0), int(event[i]))  # type: ignore
        if rng.random() < 0.08:
            pair = str(rng.choice(PAIRS))
            through = seen.get(pair, T0) - int(rng.integers(0, 90_000))
            window_ms = [MINUTE, 5 * MINUTE, None][int(rng.integers(0, 3))]
            rule = ClosureRule.IDLE if rng.random() < 0.7 else ClosureRule.END_OF_INPUT
            log.append(_closure(pair, max(through, 1), window_ms, rule))
        del k
    sizes = draw(st.lists(st.integers(1, 60), min_size=1, max_size=5))
    return log, sizes


@given(logs())
@settings(max_examples=60, deadline=None)
def test_stream_and_batch_keep_and_drop_the_same_trades_on_any_log(
        case: tuple[list[bytes], list[int]]) -> None:
    log, sizes = case
    op = candle_operator(WINDOWS)
    stream: dict[str, dict[str, object]] = {}
    letters = []
    position, turn = 0, 0
    while position < len(log):
        size = sizes[turn % len(sizes)]
        out, got, _ = feed(op, log[position:position + size], first_offset=position)
        stream.update(out)
        letters += got
        position += size
        turn += 1
    ends = [WindowClosure(closure=ClosureRule.END_OF_INPUT, pair=p, through_ms=int(t)).to_wire()
            for p, t in zip(op.pairs, op.stream_time, strict=True) if t != NO_STREAM_TIME]
    out, got, _ = feed(op, ends, first_offset=len(log))
    stream.update(out)
    assert got == []
    batch, late = batch_candles([*log, *ends], WINDOWS)
    assert batch == stream
    stream_late = Counter(int(w.size_ms) for d in letters for w in WINDOWS
                          if d.reason.endswith(f"{w.label} windows")
                          or f" {w.label} window " in d.reason)
    assert late == {w.size_ms: stream_late.get(w.size_ms, 0) for w in WINDOWS}
    assert all(d.reason.startswith(("late by stream time:", "closed on idle:",
                                    "closed at end of input:")) for d in letters)


def _records(values: list[bytes]) -> pa.Table:
    return pa.table({
        "partition": [0] * len(values),
        "offset": list(range(len(values))),
        "kafka_timestamp_ms": [T0] * len(values),
        "value": pa.array(values, pa.binary()),
    })


def batch_candles(log: list[bytes], windows: list[TumblingWindow]) -> tuple[
        dict[str, dict[str, object]], dict[int, int]]:
    """The batch's candles (as the stream's record values, by key) and late trades per
    duration, from the log read as Spark's Kafka source hands a partition over."""
    result = file_results(
        records_as_json_lines(_records(log)), "kafka:trades/0", 0, pairs=PAIRS,
        durations_ms=[w.size_ms for w in windows], grace_ms=GRACE, arrival=ArrivalOrder.FILE,
        contexts={}, parse=parse_kafka_lines)
    candles = {}
    for row in result.filter(pa.compute.equal(result["kind"], CANDLE)).to_pylist():
        candles[f"{row['pair']}|{row['window_ms']}|{row['window_start_ms']}"] = {
            k: row[k] for k in ("pair", "window_ms", "window_start_ms", "window_end_ms", "open",
                                "high", "low", "close", "volume", "vwap", "trade_count")}
    late: Counter[int] = Counter()
    for row in result.filter(pa.compute.equal(result["kind"], LATE)).to_pylist():
        late[int(row["window_ms"])] += int(row["rows_late"])
    return candles, {w.size_ms: late.get(w.size_ms, 0) for w in windows}

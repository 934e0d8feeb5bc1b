"""The indicator operator's checkpoints, without a broker: a pair that falls silent must not hold
the committed offset back, and a restart from any checkpoint emits exactly what an
uninterrupted run emits."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from features.indicators import INDICATOR_COLUMNS, MAX_WARMUP
from streaming.processors.indicators import IndicatorConfig, IndicatorOperator
from streaming.runtime.records import InputBatch
from tests.support.entity_keys import entity_keys

MINUTE = 60_000
START_MS = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE
BUSY = ("XBT/USD", "ETH/USD")
QUIET = "EOS/USD"
QUIET_CANDLES = 40  # the quiet pair trades this many minutes, then never again
BUSY_CANDLES = MAX_WARMUP + 150  # enough for every indicator to warm up and the history to trim
BATCH = 25  # messages per micro-batch; a checkpoint follows every batch

Message = tuple[str, bytes]  # (record key, value)


def _candles(seed: int) -> list[bytes]:
    """Candle messages of one partition in arrival order: the quiet pair's first, interleaved
    with the busy pairs', which go on long after it fell silent."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    price = {pair: 100.0 + 50 * i for i, pair in enumerate((*BUSY, QUIET))}
    for minute in range(BUSY_CANDLES):
        for pair in (*BUSY, QUIET):
            if pair == QUIET and minute >= QUIET_CANDLES:
                continue
            if rng.random() < 0.1:  # a minute without trades: a gap in the series
                continue
            open_ = price[pair]
            close = open_ * float(np.exp(rng.normal(0, 0.002)))
            price[pair] = close
            start = START_MS + minute * MINUTE
            rows.append({
                "pair": pair, "window_ms": MINUTE, "window_start_ms": start,
                "window_end_ms": start + MINUTE, "open": open_,
                "high": max(open_, close) * 1.001, "low": min(open_, close) * 0.999,
                "close": close, "volume": float(rng.uniform(0, 5)),
                "vwap": (open_ + close) / 2, "trade_count": int(rng.integers(1, 20)),
            })
    return [orjson.dumps(row) for row in rows]


def _operator() -> IndicatorOperator:
    return IndicatorOperator(IndicatorConfig("technical_indicators"), 0)


def _process(operator: IndicatorOperator, values: list[bytes], first: int) -> list[Message]:
    batch = InputBatch("candles", 0, np.arange(first, first + len(values), dtype=np.int64),
                       entity_keys(values), list(values))
    emission = operator.process(batch, 0)
    assert not emission.dead_letters
    return [(r.key, r.value) for r in emission.records]


def _uninterrupted(values: list[bytes]) -> list[Message]:
    operator = _operator()
    out: list[Message] = []
    for lo in range(0, len(values), BATCH):
        out += _process(operator, values[lo:lo + BATCH], lo)
    return out


def test_a_silent_pair_does_not_hold_the_committed_offset_back() -> None:
    values = _candles(0)
    operator = _operator()
    quiet_last = max(i for i, v in enumerate(values) if orjson.loads(v)["pair"] == QUIET)
    for lo in range(0, len(values), BATCH):
        _process(operator, values[lo:lo + BATCH], lo)
        position = min(lo + BATCH, len(values))
        # every checkpoint lets the offset advance to what was consumed, the quiet pair's
        # history travelling in the snapshot instead of being replayed from the log
        assert operator.commit_offset("candles") == position
    assert len(values) - quiet_last > 2 * MAX_WARMUP  # it really fell silent long ago
    snapshot = orjson.loads(orjson.dumps(operator.snapshot()))
    restored = {(h["pair"], h["window_ms"]) for h in snapshot["histories"]}
    assert restored == {(pair, MINUTE) for pair in (*BUSY, QUIET)}
    # bounded: at most MAX_WARMUP - 1 candles per (pair, duration), whatever ran before
    assert len(orjson.dumps(snapshot)) < 3 * 60_000


@given(st.integers(0, 1000), st.lists(st.integers(1, 2 * BUSY_CANDLES), min_size=1,
                                      max_size=3, unique=True), st.booleans())
@settings(max_examples=15, deadline=None)
def test_restart_replays_a_bounded_tail_and_emits_exactly_the_uninterrupted_output(
    seed: int, crash_points: list[int], crash_before_commit: bool
) -> None:
    """Kill -9 at several points (after a checkpoint and some uncheckpointed batches): the new
    operator restores the last snapshot and resumes at the committed offset (one checkpoint
    older when the crash fell between writing the snapshot and committing). Every message
    emitted, duplicates of the replayed tail included, equals the uninterrupted run's message
    for its key, every key is emitted, and the replay never reaches back past two checkpoints."""
    values = _candles(seed)
    expected = _uninterrupted(values)
    expected_by_key = dict(expected)
    assert len(expected_by_key) == len(expected)  # one message per (pair, duration, window)

    emitted: list[Message] = []
    operator = _operator()
    checkpoints: list[tuple[dict[str, object] | None, int]] = [(None, 0)]
    position = 0
    for crash in sorted(crash_points):
        while position < min(crash, len(values)):
            hi = min(position + BATCH, len(values))
            emitted += _process(operator, values[position:hi], position)
            position = hi
            if hi <= crash - BATCH:  # the last batches before the crash are not checkpointed
                commit = operator.commit_offset("candles")
                assert commit is not None
                checkpoints.append((orjson.loads(orjson.dumps(operator.snapshot())), commit))
        snapshot, _ = checkpoints[-1]
        older = crash_before_commit and len(checkpoints) > 1
        _, commit = checkpoints[-2] if older else checkpoints[-1]
        assert position - commit <= 3 * BATCH  # a bounded tail, however long EOS/USD is quiet
        operator = _operator()
        if snapshot is not None:
            operator.restore(snapshot)
        position = commit
    while position < len(values):
        hi = min(position + BATCH, len(values))
        emitted += _process(operator, values[position:hi], position)
        position = hi

    assert {key for key, _ in emitted} == expected_by_key.keys()
    for key, value in emitted:
        assert value == expected_by_key[key], key
    for key, value in expected:  # warmed-up values are there, never 0 for missing history
        row = orjson.loads(value)
        assert set(INDICATOR_COLUMNS) <= row.keys(), key


def test_a_version_1_snapshot_still_rebuilds_the_history_from_the_log() -> None:
    """Checkpoints written before histories were checkpointed hold only `next_offset`, and
    their committed offset is the oldest candle then held: the replay refills the history
    without emitting those candles again."""
    values = _candles(1)
    expected = _uninterrupted(values)
    cut = 30 * BATCH
    operator = _operator()
    operator.restore({"version": 1, "next_offset": cut})
    emitted: list[Message] = []
    for lo in range(0, len(values), BATCH):
        emitted += _process(operator, values[lo:lo + BATCH], lo)
    first_after_cut = len(_uninterrupted(values[:cut]))
    assert emitted == expected[first_after_cut:]

"""Indicator rows of a backfill range (batch.indicators_job): warm-up across range boundaries."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from batch import indicators_job
from batch.indicators_job import (
    CHUNK_COLUMN,
    IN_CHUNK_COLUMN,
    NO_LOWER_BOUND,
    MonthChunk,
    indicators_of_series,
    month_chunks,
    month_spans,
    tail_per_series,
)
from features.indicators import INDICATOR_COLUMNS, MAX_WARMUP, compute_indicators
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA

MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE


def candle_series(n: int, seed: int = 0, pair: str = "XBT/USD") -> pa.Table:
    rng = np.random.default_rng(seed)
    close = 100 + rng.normal(0, 1, n).cumsum()
    starts = T0 + np.sort(rng.choice(np.arange(3 * n), n, replace=False)) * MINUTE  # gaps
    high = close + rng.random(n)
    low = close - rng.random(n)
    return pa.table(
        {
            "pair": [pair] * n,
            "window_ms": np.full(n, MINUTE),
            "window_start_ms": starts,
            "window_end_ms": starts + MINUTE,
            "open": close + rng.normal(0, 0.1, n),
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.random(n) * 10,
            "vwap": close,
            "trade_count": np.ones(n, dtype=np.int64),
        },
        schema=CANDLE_ARROW_SCHEMA,
    )


def full_series_values(candles: pa.Table) -> dict[str, np.ndarray]:
    return compute_indicators({c: candles[c].to_numpy() for c in ("open", "high", "low", "close",
                                                                  "volume")})


def assert_same(got: pa.Table, want: dict[str, np.ndarray]) -> None:
    for name in INDICATOR_COLUMNS:
        np.testing.assert_allclose(got[name].to_numpy(), want[name], rtol=0, atol=1e-9,
                                   equal_nan=True, err_msg=name)
        assert np.array_equal(np.isnan(got[name].to_numpy()), np.isnan(want[name])), name


def test_a_range_gets_the_values_it_has_inside_the_whole_series() -> None:
    candles = candle_series(1_500)
    starts = candles["window_start_ms"].to_numpy()
    first, stop = 900, 1_200
    rows = indicators_of_series(candles, None, int(starts[first]), int(starts[stop]))
    assert rows.schema == INDICATOR_ARROW_SCHEMA
    assert rows["window_start_ms"].to_pylist() == starts[first:stop].tolist()
    whole = full_series_values(candles)
    assert_same(rows, {k: v[first:stop] for k, v in whole.items()})
    assert not np.isnan(rows["adx_14"].to_numpy()).any()  # past every warm-up


def test_history_from_the_table_stands_in_for_trades_before_the_range() -> None:
    candles = candle_series(1_400, seed=1)
    starts = candles["window_start_ms"].to_numpy()
    split = 1_000
    history = candles.slice(0, split)
    from_input = candles.slice(split)
    rows = indicators_of_series(from_input, history, int(starts[split]), int(starts[-1]) + 1)
    whole = full_series_values(candles)
    assert_same(rows, {k: v[split:] for k, v in whole.items()})


def test_input_candles_win_over_table_rows_of_the_same_windows() -> None:
    candles = candle_series(800, seed=2)
    starts = candles["window_start_ms"].to_numpy()
    stale = candles.set_column(candles.schema.get_field_index("close"), "close",
                               pa.array(candles["close"].to_numpy() * 2))
    rows = indicators_of_series(candles, stale, int(starts[700]), int(starts[-1]) + 1)
    assert_same(rows, {k: v[700:] for k, v in full_series_values(candles).items()})


def test_too_little_history_leaves_nan_never_zero() -> None:
    candles = candle_series(30, seed=3)
    rows = indicators_of_series(candles, None, T0, T0 + 10**12)
    assert np.isnan(rows["ema_20"].to_numpy()).all()  # warm-up of EMA-20 is far longer
    assert not np.isnan(rows["sma_10"].to_numpy()[9:]).any()


def test_table_history_keeps_the_last_warmup_candles_of_each_series() -> None:
    history = pa.concat_tables([candle_series(MAX_WARMUP + 50, pair="XBT/USD"),
                                candle_series(20, pair="ETH/USD")])
    tails = tail_per_series(history)
    assert tails[("XBT/USD", MINUTE)].num_rows == MAX_WARMUP - 1
    assert tails[("ETH/USD", MINUTE)].num_rows == 20
    xbt = candle_series(MAX_WARMUP + 50, pair="XBT/USD")
    assert tails[("XBT/USD", MINUTE)]["window_start_ms"].to_pylist() == (
        xbt["window_start_ms"].to_pylist()[-(MAX_WARMUP - 1):]
    )


HOUR = 3_600_000
DAY = 86_400_000


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_a_range_is_cut_at_utc_month_starts() -> None:
    spans = month_spans(_ms("2023-11-15"), _ms("2024-02-03"))
    assert spans == [
        ("2023-11", _ms("2023-11-15"), _ms("2023-12-01")),
        ("2023-12", _ms("2023-12-01"), _ms("2024-01-01")),
        ("2024-01", _ms("2024-01-01"), _ms("2024-02-01")),
        ("2024-02", _ms("2024-02-01"), _ms("2024-02-03")),
    ]
    assert month_spans(_ms("2024-03-01"), _ms("2024-04-01")) == [
        ("2024-03", _ms("2024-03-01"), _ms("2024-04-01"))]


def test_a_chunk_warms_up_from_the_latest_days_holding_enough_candles() -> None:
    # a sparse series: 300 candles on Jan 10, 200 on Jan 20, 100 on Jan 30, 70 on Feb 2, 5 on
    # Mar 5; nothing else
    series = ("EOS/USD", 60_000)
    counts = {series: {_ms("2024-01-10"): 300, _ms("2024-01-20"): 200, _ms("2024-01-30"): 100,
                       _ms("2024-02-02"): 70, _ms("2024-03-05"): 5}}
    chunks = month_chunks([series, series], counts, _ms("2024-01-25"), _ms("2024-05-01"),
                          warmup=661)
    assert [(c.pair, c.window_ms, c.month, c.first_ms, c.stop_ms) for c in chunks] == [
        ("EOS/USD", 60_000, "2024-01", _ms("2024-01-25"), _ms("2024-02-01")),
        ("EOS/USD", 60_000, "2024-02", _ms("2024-02-01"), _ms("2024-03-01")),
        ("EOS/USD", 60_000, "2024-03", _ms("2024-03-01"), _ms("2024-04-01")),
        ("EOS/USD", 60_000, "2024-04", _ms("2024-04-01"), _ms("2024-05-01")),
    ]  # every month of the range, April too: the counts may miss candles (empty chunks are free)
    # January: 600 candles before the 25th, fewer than 661: every earlier candle (and the
    # table's history); February: 100 + 200 + 300 = 600 < 661 as well; March and April:
    # 70 + 100 + 200 + 300 >= 661 from Jan 10 on (April's 5 + 70 + 100 + 200 + 300 too)
    assert [c.warmup_from_ms for c in chunks] == [NO_LOWER_BOUND, NO_LOWER_BOUND,
                                                  _ms("2024-01-10"), _ms("2024-01-10")]
    counts[series][_ms("2024-01-10")] = 290
    assert month_chunks([series], counts, _ms("2024-01-25"), _ms("2024-04-01"),
                        warmup=661)[2].warmup_from_ms == NO_LOWER_BOUND
    # a series nobody counted a candle of: every chunk takes everything before it
    assert {c.warmup_from_ms for c in month_chunks([("ADA/USD", 60_000)], counts,
                                                   _ms("2024-01-25"), _ms("2024-04-01"))} == {
        NO_LOWER_BOUND}


def hourly_series(n: int, seed: int) -> pa.Table:
    """`n` one-hour candles with gaps, over about four months from 2024-01-20."""
    rng = np.random.default_rng(seed)
    table = candle_series(n, seed=seed)
    t0 = _ms("2024-01-20")
    starts = t0 + np.sort(rng.choice(np.arange(n * 5 // 4), n, replace=False)) * HOUR
    table = table.set_column(table.schema.get_field_index("window_ms"), "window_ms",
                             pa.array(np.full(n, HOUR)))
    table = table.set_column(table.schema.get_field_index("window_start_ms"), "window_start_ms",
                             pa.array(starts))
    return table.set_column(table.schema.get_field_index("window_end_ms"), "window_end_ms",
                            pa.array(starts + HOUR))


def placed_in_chunks(candles: pa.Table, chunks: list[MonthChunk]) -> pa.Table:
    """What `chunked_candles` does in Spark: each chunk's rows with its `month`."""
    starts = candles["window_start_ms"].to_numpy()
    pieces = []
    for chunk in chunks:
        mine = (starts >= chunk.warmup_from_ms) & (starts < chunk.stop_ms)
        rows = candles.filter(pa.array(mine))
        pieces.append(rows.append_column(CHUNK_COLUMN, pa.array([chunk.month] * rows.num_rows))
                      .append_column(IN_CHUNK_COLUMN,
                                     pa.array(starts[mine] >= chunk.first_ms)))
    return pa.concat_tables(pieces)


def test_month_chunks_in_any_task_and_order_give_the_whole_series_values() -> None:
    candles = hourly_series(2_800, seed=4)  # Jan 20 to about May 15
    starts = candles["window_start_ms"].to_numpy()
    start_ms, end_ms = _ms("2024-02-10"), _ms("2024-05-01")
    days: dict[int, int] = {}
    for day in (starts - starts % DAY).tolist():
        days[day] = days.get(day, 0) + 1
    chunks = month_chunks([("XBT/USD", HOUR)], {("XBT/USD", HOUR): days}, start_ms, end_ms)
    assert [c.month for c in chunks] == ["2024-02", "2024-03", "2024-04"]
    assert all(c.warmup_from_ms != NO_LOWER_BOUND for c in chunks[1:])
    # counts that miss candles (here every other day's) only lengthen the warm-up
    fewer = {day: count for i, (day, count) in enumerate(sorted(days.items())) if i % 2}
    longer = month_chunks([("XBT/USD", HOUR)], {("XBT/USD", HOUR): fewer}, start_ms, end_ms)
    assert all(a.warmup_from_ms <= b.warmup_from_ms for a, b in zip(longer, chunks, strict=True))
    assert longer[2].warmup_from_ms < chunks[2].warmup_from_ms
    run = indicators_job._per_task({}, start_ms, end_ms)
    wanted = (starts >= start_ms) & (starts < end_ms)
    whole = full_series_values(candles)
    for placement in (chunks, longer):
        placed = placed_in_chunks(candles.filter(pa.array(starts < end_ms)), placement)
        # two tasks, rows shuffled: each task holds whole chunks, in no order
        rng = np.random.default_rng(5)
        task_of = {"2024-02": 0, "2024-03": 1, "2024-04": 0}
        out = []
        for task in (0, 1):
            rows = placed.filter(pa.array([task_of[m] == task for m in
                                           placed[CHUNK_COLUMN].to_pylist()]))
            rows = rows.take(pa.array(rng.permutation(rows.num_rows)))
            out += list(run(iter(rows.to_batches(max_chunksize=500))))
        got = pa.Table.from_batches(out).sort_by("window_start_ms")
        assert got["window_start_ms"].to_numpy().tolist() == starts[wanted].tolist()
        assert_same(got, {k: v[wanted] for k, v in whole.items()})
        assert got[CHUNK_COLUMN].to_pylist() == [  # each row's table partition
            datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m") for ms in starts[wanted]]
    assert list(run(iter([]))) == []

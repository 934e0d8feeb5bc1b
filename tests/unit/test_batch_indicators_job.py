"""Indicator rows of a backfill range (batch.indicators_job): warm-up across range boundaries."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from batch.indicators_job import indicators_of_series, tail_per_series
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

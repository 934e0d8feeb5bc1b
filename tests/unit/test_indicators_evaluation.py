"""The compiled evaluation of the indicators equals TA-Lib called once per row.

`compute_indicators` (every window at once, `features.indicator_kernels`) is held to the
literal definition, `compute_indicators_per_row` (TA-Lib over each row's `warmup` candles):
relative difference at most 1e-9 and NaN at the same places, on real Kraken candles (1m and 1h
from the 2018 trade files), on generated series with gaps, flat prices and zero volume, and on
series hypothesis draws.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.candles import aggregate_trades, finalize
from features.indicators import INDICATOR_COLUMNS, INDICATORS, MAX_WARMUP, compute_indicators
from features.indicators_reference import compute_indicators_per_row
from features.kraken_formats import read_trades_csv
from features.windows import TumblingWindow

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "kraken-trades"
RELATIVE = 1e-9
MINUTE, HOUR = 60_000, 3_600_000
Series = dict[str, np.ndarray]


def assert_equal_to_reference(ours: Series, reference: Series) -> None:
    for column in INDICATOR_COLUMNS:
        a, b = ours[column], reference[column]
        assert a.shape == b.shape, column
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{column}: NaN places")
        defined = ~np.isnan(b)
        np.testing.assert_allclose(a[defined], b[defined], rtol=RELATIVE, atol=0, err_msg=column)


def check_rows(candles: Series, start: int) -> None:
    """Rows `start..` of the compiled evaluation equal the per-row one (history before)."""
    assert_equal_to_reference(compute_indicators(candles, start),
                              compute_indicators_per_row(candles, start))


def kraken_candles(name: str, size_ms: int) -> Series:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real trade data not found at {path} (../shared/data is not on this machine)")
    trades = read_trades_csv(str(path))
    candles = finalize(aggregate_trades(
        TumblingWindow(size_ms), np.zeros(trades.num_rows, dtype=np.int64),
        trades["timestamp_ms"].to_numpy(), trades["trade_id"].to_numpy(),
        trades["price"].to_numpy(), trades["volume"].to_numpy(),
    ))
    return {name: candles[name] for name in ("open", "high", "low", "close", "volume")}


@pytest.mark.parametrize(
    ("name", "size_ms", "rows"),
    [
        ("XBTUSD_kraken_2018_trades.sorted.csv", MINUTE, 1_500),
        ("USDTUSD_kraken_2018_trades.sorted.csv", MINUTE, 1_500),  # thin: flat runs, tiny moves
        ("EOSUSD_kraken_2018_trades.sorted.csv", MINUTE, 1_000),
        ("ETHUSD_kraken_2018_trades.sorted.csv", HOUR, 600),
        ("EOSUSD_kraken_2018_trades.sorted.csv", HOUR, 600),
        ("USDTUSD_kraken_2018_trades.sorted.csv", HOUR, 600),
    ],
    ids=lambda v: str(v).split("_")[0],
)
def test_real_kraken_candles_equal_talib_per_row(name: str, size_ms: int, rows: int) -> None:
    candles = kraken_candles(name, size_ms)
    n = len(candles["close"])  # 1h: fewer candles than ADX's warm-up on some files (NaN)
    check_rows(candles, start=max(0, n - rows))


def generated_candles(n: int, seed: int) -> Series:
    """Candles with gaps (price jumps between sessions), flat runs, and zero-volume candles."""
    rng = np.random.default_rng(seed)
    close = 1.0 + np.cumsum(rng.normal(0, 0.002, n))
    close = np.round(np.abs(close) * 20_000, 1) + 0.1
    gaps = rng.random(n) < 0.01
    close = close * np.cumprod(np.where(gaps, rng.uniform(0.8, 1.25, n), 1.0))
    for start in rng.integers(0, n, n // 60):  # flat runs of up to 400 candles
        close[start : start + rng.integers(2, 400)] = close[start]
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rng.normal(0, 0.0005, n)) * close
    flat = rng.random(n) < 0.3
    spread[flat] = 0.0
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.lognormal(0, 1, n)
    volume[rng.random(n) < 0.2] = 0.0
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_series_with_gaps_flat_prices_and_zero_volume(seed: int) -> None:
    candles = generated_candles(MAX_WARMUP + 700, seed)
    check_rows(candles, start=0)


def test_a_wholly_flat_series_with_no_volume() -> None:
    n = MAX_WARMUP + 50
    flat = np.full(n, 0.1)  # not exactly representable: sums are not exact either
    candles = {"open": flat, "high": flat, "low": flat, "close": flat, "volume": np.zeros(n)}
    check_rows(candles, start=0)
    values = compute_indicators(candles)
    assert values["rsi_14"][-1] == 0.0 and values["stochrsi_k"][-1] == 0.0


def test_tiny_prices_and_tiny_moves() -> None:
    # USDT/USD-like: prices near 1 moving by 1e-4, volumes far below 1
    candles = generated_candles(MAX_WARMUP + 300, seed=5)
    scaled = {k: (v / 20_000 if k != "volume" else v * 1e-3) for k, v in candles.items()}
    check_rows(scaled, start=0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    extra=st.integers(0, 40),
    scale=st.sampled_from([1e-3, 1.0, 20_000.0, 1e7]),
    flat_share=st.floats(0.0, 0.9),
    zero_volume_share=st.floats(0.0, 1.0),
)
def test_any_generated_series_equals_the_per_row_reference(
    seed: int, extra: int, scale: float, flat_share: float, zero_volume_share: float
) -> None:
    rng = np.random.default_rng(seed)
    n = MAX_WARMUP + extra
    moves = rng.normal(0, 0.003, n) * (rng.random(n) >= flat_share)
    close = scale * np.exp(np.cumsum(moves))
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rng.normal(0, 0.001, n)) * close * (rng.random(n) >= flat_share)
    volume = rng.lognormal(0, 1, n) * (rng.random(n) >= zero_volume_share)
    candles = {"open": open_, "high": np.maximum(open_, close) + spread,
               "low": np.minimum(open_, close) - spread, "close": close, "volume": volume}
    check_rows(candles, start=max(0, n - 12))


def test_a_nearly_flat_series_of_small_prices_keeps_its_bollinger_width() -> None:
    """Closes of 0.001 moving by 1e-7: a variance of about 5e-15, which TA-Lib 0.8 keeps (its
    band is 1e-7 wide) and an older zero test rounded to nothing (hypothesis found it)."""
    import talib

    n = MAX_WARMUP + 5
    close = 0.001 + 1e-7 * np.sin(np.arange(n))
    candles = {"open": close, "high": close + 1e-9, "low": close - 1e-9, "close": close,
               "volume": np.ones(n)}
    ours = compute_indicators(candles, n - 5)
    upper, middle, _ = talib.BBANDS(close[-20:], timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    assert upper[-1] - middle[-1] == pytest.approx(2 * close[-20:].std(), rel=1e-6)
    assert ours["bb_upper"][-1] == pytest.approx(upper[-1], rel=1e-12, abs=0)
    check_rows(candles, start=n - 5)


def test_fewer_candles_than_any_warm_up_gives_nan_everywhere() -> None:
    candles = generated_candles(30, seed=3)
    for start in (0, 10, 30):
        check_rows(candles, start)


def test_each_indicator_is_nan_exactly_before_its_warm_up() -> None:
    candles = generated_candles(MAX_WARMUP + 5, seed=4)
    values = compute_indicators(candles)
    for spec in INDICATORS:
        for column in spec.columns:
            assert np.isnan(values[column][: spec.warmup - 1]).all(), column
            assert not np.isnan(values[column][spec.warmup - 1 :]).any(), column

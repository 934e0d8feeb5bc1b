"""Indicators: TA-Lib over a fixed warm-up, NaN before it, independent of history length."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from features.indicators import (
    INDICATOR_COLUMNS,
    INDICATORS,
    MAX_WARMUP,
    OBV_WINDOW,
    compute_indicators,
)


def _random_candles(n: int, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 20_000 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rng.normal(0, 0.001, n)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.lognormal(0, 1, n)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


CANDLES = _random_candles(MAX_WARMUP + 400)
VALUES = compute_indicators(CANDLES)


def _talib_full(spec) -> dict[str, np.ndarray]:
    """TA-Lib's batch function with the spec's parameters over the whole series."""
    func = getattr(talib, spec.function)
    result = func(*(CANDLES[name] for name in spec.inputs), **dict(spec.params))
    outputs = result if isinstance(result, tuple) else (result,)
    return dict(zip(spec.columns, outputs, strict=True))


def test_the_declared_list_covers_the_required_indicators() -> None:
    names = {s.function for s in INDICATORS}
    assert {"SMA", "EMA", "RSI", "MACD", "BBANDS", "ATR", "ADX", "OBV", "MFI", "STOCHRSI",
            "ROC"} <= names
    assert len(INDICATOR_COLUMNS) == len(set(INDICATOR_COLUMNS))


@pytest.mark.parametrize("spec", INDICATORS, ids=lambda s: s.columns[0])
def test_values_are_nan_before_warm_up_and_defined_after(spec) -> None:
    for column in spec.columns:
        values = VALUES[column]
        assert np.isnan(values[: spec.warmup - 1]).all()
        assert not np.isnan(values[spec.warmup - 1 :]).any()


@pytest.mark.parametrize("spec", [s for s in INDICATORS if s.function != "OBV"],
                         ids=lambda s: s.columns[0])
def test_values_equal_talib_over_the_full_series_after_warm_up(spec) -> None:
    # TA-Lib's own batch function over the whole series is the independent truth
    full = _talib_full(spec)
    for column in spec.columns:
        ours = VALUES[column][spec.warmup - 1 :]
        theirs = full[column][spec.warmup - 1 :]
        scale = max(1.0, float(np.nanmax(np.abs(theirs))))
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-8 * scale, err_msg=column)


def test_obv_is_talib_obv_over_its_window() -> None:
    full = talib.OBV(CANDLES["close"], CANDLES["volume"])
    t = np.arange(OBV_WINDOW - 1, len(full))
    start = t - OBV_WINDOW + 1
    expected = full[t] - full[start] + CANDLES["volume"][start]
    np.testing.assert_allclose(VALUES["obv_50"][OBV_WINDOW - 1 :], expected, rtol=1e-12, atol=1e-9)


def test_a_value_depends_only_on_its_warm_up_not_on_older_history() -> None:
    # what a stream that started later (or a backfill of a later range with warm-up) computes
    offset = 150
    later = compute_indicators({k: v[offset:] for k, v in CANDLES.items()})
    for spec in INDICATORS:
        for column in spec.columns:
            rows = np.arange(offset + spec.warmup - 1, len(CANDLES["close"]))
            np.testing.assert_array_equal(later[column][rows - offset], VALUES[column][rows],
                                          err_msg=column)


def test_computing_only_new_rows_equals_computing_everything() -> None:
    tail = compute_indicators(CANDLES, start=len(CANDLES["close"]) - 5)
    for column in INDICATOR_COLUMNS:
        np.testing.assert_array_equal(tail[column], VALUES[column][-5:], err_msg=column)


def test_too_short_history_gives_nan_never_zero() -> None:
    short = compute_indicators({k: v[:5] for k, v in CANDLES.items()})
    for column in INDICATOR_COLUMNS:
        assert np.isnan(short[column]).all(), column

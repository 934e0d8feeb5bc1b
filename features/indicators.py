"""Technical indicators over a pair's candle series: declared once, computed by TA-Lib.

Each indicator has a fixed **warm-up**: the number of candles it sees. Its value at candle `t`
is TA-Lib's function run over exactly the `warmup` candles ending at `t` (the last output
value), and NaN while fewer candles exist. Because the value depends only on those candles,
a stream holding the last `warmup` candles and a backfill over years of history compute the
same number: EMA-type indicators do not drift with history length, and NaN is never filled.

The warm-up of an indicator with a finite lookback (SMA, Bollinger bands, ROC, MFI) is TA-Lib's
lookback + 1, so the value equals TA-Lib's over any longer series. Recursive indicators (EMA,
RSI, MACD, ATR, ADX, stochastic RSI) are given enough extra candles that the forgotten start
weighs less than 1e-10 of the value: they match TA-Lib over the full series after warm-up.
`obv_50` is not TA-Lib's cumulative OBV (a running sum since the series began, which no two
engines could agree on): it is TA-Lib's OBV run over the last `OBV_WINDOW` (50) candles, i.e.
the first candle's volume plus the signed volumes of the 49 candles after it (+volume when the
close rose, -volume when it fell).

Evaluation: `compute_indicators` runs TA-Lib's algorithms for every window at once in compiled
code (`features.indicator_kernels`); `features.indicators_reference` calls TA-Lib once per row
and is what the tests and `bench/bench_indicators.py` compare it with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import talib
from talib import abstract

from features import indicator_kernels as k

# The one declared list of indicator periods.
SMA_PERIODS = (10, 20)
EMA_PERIODS = (10, 20)
RSI_PERIOD = 14
MACD_PERIODS = (12, 26, 9)  # fast, slow, signal
BBANDS_PERIOD, BBANDS_DEVIATIONS = 20, 2.0
ATR_PERIOD = 14
ADX_PERIOD = 14
MFI_PERIOD = 14
STOCHRSI_PERIODS = (14, 5, 3)  # rsi period, fast %K, fast %D
ROC_PERIOD = 10
OBV_WINDOW = 50

RESIDUAL_WEIGHT = 1e-10
"""Recursive indicators get enough warm-up that the initial state weighs less than this."""

INPUT_COLUMNS = ("open", "high", "low", "close", "volume")


def _extra_for_smoothing(alpha: float) -> int:
    """Candles after which (1 - alpha)^k falls below RESIDUAL_WEIGHT."""
    return math.ceil(math.log(RESIDUAL_WEIGHT) / math.log(1.0 - alpha))


@dataclass(frozen=True)
class IndicatorSpec:
    """One TA-Lib function with fixed parameters.

    `outputs` maps TA-Lib's output names to Braid's column names. `smoothing_alpha` is set for
    recursive (EMA-type) indicators: it sets the extra warm-up. `warmup` overrides the derived
    warm-up (used by OBV).
    """

    function: str
    params: Mapping[str, float | int] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    smoothing_alpha: float | None = None
    fixed_warmup: int | None = None

    @cached_property
    def _function(self) -> Any:  # talib.abstract.Function (untyped)
        return abstract.Function(self.function, **dict(self.params))  # type: ignore[attr-defined]

    @property
    def inputs(self) -> tuple[str, ...]:
        names: list[str] = []
        for value in self._function.input_names.values():
            names.extend([value] if isinstance(value, str) else value)
        return tuple(names)

    @property
    def lookback(self) -> int:
        return int(self._function.lookback)

    @property
    def warmup(self) -> int:
        if self.fixed_warmup is not None:
            return self.fixed_warmup
        extra = 0 if self.smoothing_alpha is None else _extra_for_smoothing(self.smoothing_alpha)
        return self.lookback + 1 + extra

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.outputs.values())

    def run(self, series: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """TA-Lib over a whole series (every output, full length)."""
        func = getattr(talib, self.function)
        args = [np.ascontiguousarray(series[name], dtype=np.float64) for name in self.inputs]
        result = func(*args, **dict(self.params))
        values = result if isinstance(result, tuple) else (result,)
        names = list(self._function.output_names)
        return {self.outputs[n]: v for n, v in zip(names, values, strict=True)}


def _wilder(period: int) -> float:
    return 1.0 / period


def _ema(period: int) -> float:
    return 2.0 / (period + 1)


INDICATORS: tuple[IndicatorSpec, ...] = (
    *(
        IndicatorSpec("SMA", {"timeperiod": p}, {"real": f"sma_{p}"})
        for p in SMA_PERIODS
    ),
    *(
        IndicatorSpec("EMA", {"timeperiod": p}, {"real": f"ema_{p}"}, smoothing_alpha=_ema(p))
        for p in EMA_PERIODS
    ),
    IndicatorSpec(
        "RSI", {"timeperiod": RSI_PERIOD}, {"real": f"rsi_{RSI_PERIOD}"},
        smoothing_alpha=_wilder(RSI_PERIOD),
    ),
    IndicatorSpec(
        "MACD",
        dict(zip(("fastperiod", "slowperiod", "signalperiod"), MACD_PERIODS, strict=True)),
        {"macd": "macd", "macdsignal": "macd_signal", "macdhist": "macd_hist"},
        smoothing_alpha=_ema(MACD_PERIODS[1]) / 2,  # slow EMA feeding the signal EMA
    ),
    IndicatorSpec(
        "BBANDS",
        {"timeperiod": BBANDS_PERIOD, "nbdevup": BBANDS_DEVIATIONS, "nbdevdn": BBANDS_DEVIATIONS},
        {"upperband": "bb_upper", "middleband": "bb_middle", "lowerband": "bb_lower"},
    ),
    IndicatorSpec(
        "ATR", {"timeperiod": ATR_PERIOD}, {"real": f"atr_{ATR_PERIOD}"},
        smoothing_alpha=_wilder(ATR_PERIOD),
    ),
    IndicatorSpec(
        "ADX", {"timeperiod": ADX_PERIOD}, {"real": f"adx_{ADX_PERIOD}"},
        smoothing_alpha=_wilder(ADX_PERIOD) / 2,  # two chained Wilder smoothings
    ),
    IndicatorSpec("OBV", {}, {"real": f"obv_{OBV_WINDOW}"}, fixed_warmup=OBV_WINDOW),
    IndicatorSpec("MFI", {"timeperiod": MFI_PERIOD}, {"real": f"mfi_{MFI_PERIOD}"}),
    IndicatorSpec(
        "STOCHRSI",
        dict(zip(("timeperiod", "fastk_period", "fastd_period"), STOCHRSI_PERIODS, strict=True)),
        {"fastk": "stochrsi_k", "fastd": "stochrsi_d"},
        smoothing_alpha=_wilder(STOCHRSI_PERIODS[0]),
    ),
    IndicatorSpec("ROC", {"timeperiod": ROC_PERIOD}, {"real": f"roc_{ROC_PERIOD}"}),
)

INDICATOR_COLUMNS: tuple[str, ...] = tuple(c for spec in INDICATORS for c in spec.columns)
MAX_WARMUP: int = max(spec.warmup for spec in INDICATORS)
"""How many candles per pair an engine must keep (or read before a backfill's start)."""


def compute_indicators(
    candles: Mapping[str, np.ndarray], start: int = 0
) -> dict[str, np.ndarray]:
    """Indicator values for rows `start..n-1` of one pair's candle series (sorted by window).

    Row `t` uses exactly the `warmup` candles ending at `t` of each indicator; rows with fewer
    candles before them are NaN. `candles` holds the columns of `INPUT_COLUMNS`; the rows before
    `start` are history only. Both engines call this function. The values are TA-Lib's over
    each window (see `features.indicators_reference`), computed for all rows in compiled code.
    """
    n = len(candles["close"])
    if not 0 <= start <= n:
        raise ValueError(f"start {start} outside 0..{n}")
    series = {
        name: np.ascontiguousarray(candles[name], dtype=np.float64) for name in INPUT_COLUMNS
    }
    out = {column: np.full(n - start, np.nan) for column in INDICATOR_COLUMNS}
    for spec in INDICATORS:
        first_row = max(start, spec.warmup - 1)
        if first_row >= n:
            continue
        targets = [out[column][first_row - start :] for column in spec.columns]
        _evaluate(spec, series, first_row, targets)
    return out


def _evaluate(
    spec: IndicatorSpec, series: Mapping[str, np.ndarray], first: int, targets: list[np.ndarray]
) -> None:
    """Fill `targets` (one array per output column) with `spec`'s values of rows `first..`."""
    p = dict(spec.params)
    w = spec.warmup
    c, h, lo, v = series["close"], series["high"], series["low"], series["volume"]
    match spec.function:
        case "SMA":
            k.sma(c, w, int(p["timeperiod"]), first, *targets)
        case "EMA":
            k.ema(c, w, int(p["timeperiod"]), first, *targets)
        case "RSI":
            k.rsi(c, w, int(p["timeperiod"]), first, *targets)
        case "MACD":
            k.macd(c, w, int(p["fastperiod"]), int(p["slowperiod"]), int(p["signalperiod"]),
                   first, *targets)
        case "BBANDS":
            if p["nbdevup"] != p["nbdevdn"]:
                raise ValueError("BBANDS kernel needs equal up and down deviations")
            k.bbands(c, w, int(p["timeperiod"]), float(p["nbdevup"]), first, *targets)
        case "ATR":
            k.atr(h, lo, c, w, int(p["timeperiod"]), first, *targets)
        case "ADX":
            k.adx(h, lo, c, w, int(p["timeperiod"]), first, *targets)
        case "OBV":
            k.obv(c, v, w, first, *targets)
        case "MFI":
            k.mfi(h, lo, c, v, w, int(p["timeperiod"]), first, *targets)
        case "STOCHRSI":
            k.stochrsi(c, w, int(p["timeperiod"]), int(p["fastk_period"]),
                       int(p["fastd_period"]), first, *targets)
        case "ROC":
            k.roc(c, w, int(p["timeperiod"]), first, *targets)
        case other:
            raise ValueError(f"no compiled kernel for {other}")

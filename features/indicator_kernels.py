"""TA-Lib's algorithms over every fixed-length window of a series, in compiled code.

`features.indicators` defines each indicator value as TA-Lib's function over exactly the
`window` candles ending at that row. Calling TA-Lib once per row from Python costs about a
millisecond per candle. The kernels here run the same algorithms (TA-Lib 0.8's C code: the
same seeds, the same recursions, the same operations in the same order, the same zero tests,
read from its source and its compiled library) for every window of a series in one compiled
call (numba). Each value equals TA-Lib's over that window: to the last bit for all but the
Bollinger bands, whose variance is summed in another order (within 1e-15 relative).

Every kernel takes the input columns, the window length and the first row to compute, and
fills an output array for rows `first..n-1` (row `t` sees `t - window + 1 .. t`); the caller
ensures `first >= window - 1`. The per-window functions (`_..._window`) mirror TA-Lib's C
functions and are the one place to read an algorithm; the recursive ones (EMA, RSI, MACD, ATR,
ADX, stochastic RSI) also have a kernel that advances BLOCK windows side by side with the same
operations, which the compiler can vectorise (tests hold it equal to the per-window function,
bit for bit).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

_CACHE = os.path.isfile(__file__)
"""numba caches compiled kernels beside this file; not when it is imported from a zip (the
`--py-files` archive on a cluster), where there is nowhere to cache and each worker compiles."""

EPSILON = 1e-14
"""TA-Lib's `TA_EPSILON`: its zero tests (`TA_IS_ZERO`) treat |v| < this as zero."""

BLOCK = 256
"""Windows evaluated side by side by the vectorised kernels (their state fits in L1)."""


def _fma_typing(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    signature = types.float64(types.float64, types.float64, types.float64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.fma(*args)

    return signature, codegen


_fma: Any = intrinsic(_fma_typing)
"""fma(a, b, c): a * b + c rounded once (C's `fma`), as TA-Lib 0.8's EMA recursions compute."""


@njit(cache=_CACHE, error_model="numpy")
def _is_zero(value: float) -> bool:
    return -EPSILON < value < EPSILON


@njit(cache=_CACHE, error_model="numpy")
def _true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray, i: int) -> float:
    """TA-Lib's true range of candle `i` (needs candle `i - 1`)."""
    greatest = high[i] - low[i]
    value = abs(close[i - 1] - high[i])
    if value > greatest:
        greatest = value
    value = abs(low[i] - close[i - 1])
    if value > greatest:
        greatest = value
    return greatest


# --- one window: TA-Lib's C code, window x[s : s + w] -------------------------------------


@njit(cache=_CACHE, error_model="numpy")
def _sma_window(x: np.ndarray, s: int, period: int) -> float:
    total = 0.0
    for i in range(s, s + period):
        total += x[i]
    return total / period


@njit(cache=_CACHE, error_model="numpy")
def _ema_window(x: np.ndarray, s: int, w: int, period: int) -> float:
    k = 2.0 / (period + 1)
    prev = 0.0
    for i in range(s, s + period):
        prev += x[i]
    prev = prev / period
    for i in range(s + period, s + w):
        prev = _fma(k, x[i] - prev, prev)
    return prev


@njit(cache=_CACHE, error_model="numpy")
def _rsi_window(x: np.ndarray, s: int, w: int, period: int, out: np.ndarray) -> None:
    """RSI over x[s : s + w]; writes the last `len(out)` RSI values of the window to `out`.

    TA-Lib 0.8 (compiled): Wilder's averages are scaled by the reciprocal of the period
    (`* (1 / period)`, not `/ period`), and an average sum that is not > 0 gives 0.
    """
    keep = out.shape[0]
    inverse = 1.0 / period
    previous_weight = float(period - 1)
    prev_value = x[s]
    gain = 0.0
    loss = 0.0
    today = s + 1
    for _ in range(period):
        diff = x[today] - prev_value
        prev_value = x[today]
        today += 1
        up = diff if diff > 0.0 else 0.0
        gain += up
        loss += up - diff
    gain *= inverse
    loss *= inverse
    end = s + w  # exclusive
    index = s + period  # the first RSI belongs to this candle
    if index >= end - keep:
        total = loss + gain
        out[index - (end - keep)] = (gain / total) * 100.0 if total > 0.0 else 0.0
    while today < end:
        gain *= previous_weight
        loss *= previous_weight
        diff = x[today] - prev_value
        prev_value = x[today]
        up = diff if diff > 0.0 else 0.0
        gain += up
        loss = (up - diff) + loss
        gain *= inverse
        loss *= inverse
        if today >= end - keep:
            total = loss + gain
            out[today - (end - keep)] = (gain / total) * 100.0 if total > 0.0 else 0.0
        today += 1


@njit(cache=_CACHE, error_model="numpy")
def _macd_window(
    x: np.ndarray, s: int, w: int, fast: int, slow: int, signal: int
) -> tuple[float, float, float]:
    slow_k = 2.0 / (slow + 1)
    fast_k = 2.0 / (fast + 1)
    signal_k = 2.0 / (signal + 1)
    today = s
    total = 0.0
    for _ in range(slow - fast):
        total += x[today]
        today += 1
    prev_fast = 0.0
    for _ in range(fast):
        prev_fast += x[today]
        total += x[today]
        today += 1
    prev_slow = total / slow
    prev_fast = prev_fast / fast
    macd = prev_fast - prev_slow
    prev_signal = 0.0
    prev_signal += macd
    for _ in range(signal - 1):
        value = x[today]
        today += 1
        prev_fast = _fma(fast_k, value - prev_fast, prev_fast)
        prev_slow = _fma(slow_k, value - prev_slow, prev_slow)
        macd = prev_fast - prev_slow
        prev_signal += macd
    prev_signal = prev_signal / signal
    while today < s + w:
        value = x[today]
        today += 1
        prev_fast = _fma(fast_k, value - prev_fast, prev_fast)
        prev_slow = _fma(slow_k, value - prev_slow, prev_slow)
        macd = prev_fast - prev_slow
        prev_signal = _fma(signal_k, macd - prev_signal, prev_signal)
    return macd, prev_signal, macd - prev_signal


@njit(cache=_CACHE, error_model="numpy")
def _stddev_window(x: np.ndarray, s: int, period: int, mean: float) -> float:
    """Population standard deviation of x[s : s + period] (two passes: no cancellation).

    TA-Lib 0.8 sums deviations from a reference value (not E[x²] - E[x]²); both are exact
    to rounding. Unlike older TA-Lib, 0.8 does not round a small variance down to 0: a nearly
    flat series of small prices (0.001, a variance of 3e-15) keeps its band width (found by
    the hypothesis test against TA-Lib; zeroing it was off by 1e-4 relative).
    """
    total = 0.0
    for i in range(s, s + period):
        deviation = x[i] - mean
        total += deviation * deviation
    variance = total / period
    return np.sqrt(variance) if variance > 0.0 else 0.0


@njit(cache=_CACHE, error_model="numpy")
def _atr_window(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, s: int, w: int, period: int
) -> float:
    """ATR over x[s : s + w]. TA-Lib 0.8 (compiled): the first ATR is the mean true range of
    the first `period` candles after the first; then ATR = fma(c, ATR, TR * (1 - c)) with
    c = (period - 1) / period."""
    total = 0.0
    for i in range(s + 1, s + 1 + period):
        total += _true_range(high, low, close, i)
    prev = total / period
    keep = (period - 1) / period
    new = 1.0 - keep
    for i in range(s + 1 + period, s + w):
        prev = _fma(keep, prev, _true_range(high, low, close, i) * new)
    return prev


@njit(cache=_CACHE, error_model="numpy")
def _adx_window(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, s: int, w: int, period: int
) -> float:
    prev_minus_dm = 0.0
    prev_plus_dm = 0.0
    prev_tr = 0.0
    today = s
    prev_high = high[today]
    prev_low = low[today]
    prev_close = close[today]
    for _ in range(period - 1):
        today += 1
        diff_p = high[today] - prev_high
        prev_high = high[today]
        diff_m = prev_low - low[today]
        prev_low = low[today]
        if diff_m > 0 and diff_p < diff_m:
            prev_minus_dm += diff_m
        elif diff_p > 0 and diff_p > diff_m:
            prev_plus_dm += diff_p
        prev_tr += _true_range(high, low, close, today)
        prev_close = close[today]
    sum_dx = 0.0
    for _ in range(period):
        today += 1
        diff_p = high[today] - prev_high
        prev_high = high[today]
        diff_m = prev_low - low[today]
        prev_low = low[today]
        prev_minus_dm -= prev_minus_dm / period
        prev_plus_dm -= prev_plus_dm / period
        if diff_m > 0 and diff_p < diff_m:
            prev_minus_dm += diff_m
        elif diff_p > 0 and diff_p > diff_m:
            prev_plus_dm += diff_p
        prev_tr = prev_tr - prev_tr / period + _true_range(high, low, close, today)
        prev_close = close[today]
        if not _is_zero(prev_tr):
            minus_di = 100.0 * (prev_minus_dm / prev_tr)
            plus_di = 100.0 * (prev_plus_dm / prev_tr)
            total = minus_di + plus_di
            if not _is_zero(total):
                sum_dx += 100.0 * (abs(minus_di - plus_di) / total)
    prev_adx = sum_dx / period
    while today < s + w - 1:
        today += 1
        diff_p = high[today] - prev_high
        prev_high = high[today]
        diff_m = prev_low - low[today]
        prev_low = low[today]
        prev_minus_dm -= prev_minus_dm / period
        prev_plus_dm -= prev_plus_dm / period
        if diff_m > 0 and diff_p < diff_m:
            prev_minus_dm += diff_m
        elif diff_p > 0 and diff_p > diff_m:
            prev_plus_dm += diff_p
        prev_tr = prev_tr - prev_tr / period + _true_range(high, low, close, today)
        prev_close = close[today]
        if not _is_zero(prev_tr):
            minus_di = 100.0 * (prev_minus_dm / prev_tr)
            plus_di = 100.0 * (prev_plus_dm / prev_tr)
            total = minus_di + plus_di
            if not _is_zero(total):
                dx = 100.0 * (abs(minus_di - plus_di) / total)
                prev_adx = (prev_adx * (period - 1) + dx) / period
    _ = prev_close
    return prev_adx


@njit(cache=_CACHE, error_model="numpy")
def _obv_window(close: np.ndarray, volume: np.ndarray, s: int, w: int) -> float:
    obv = volume[s]
    prev = close[s]
    for i in range(s, s + w):
        value = close[i]
        if value > prev:
            obv += volume[i]
        elif value < prev:
            obv -= volume[i]
        prev = value
    return obv


@njit(cache=_CACHE, error_model="numpy")
def _mfi_window(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, s: int,
    period: int,
) -> float:
    """MFI over x[s : s + period + 1] (one value: the window is exactly the lookback + 1).

    TA-Lib 0.8 (compiled): a typical price within 1e-14 of the previous one (relative to
    their magnitude) is no change; the positive flow is clamped to [0, total]; a total that
    is not > 0 gives 0.
    """
    prev = (high[s] + low[s] + close[s]) / 3.0
    positive = 0.0
    negative = 0.0
    for i in range(s + 1, s + 1 + period):
        typical = (high[i] + low[i] + close[i]) / 3.0
        diff = typical - prev
        flat = abs(diff) <= EPSILON * (abs(typical) + abs(prev))
        prev = typical
        if not flat:
            flow = volume[i] * typical
            if diff < 0.0:
                negative += flow
            else:
                positive += flow
    total = positive + negative
    if not total > 0.0:
        return 0.0
    share = 0.0 if positive < 0.0 else min(total, positive)
    return (share / total) * 100.0


@njit(cache=_CACHE, error_model="numpy")
def _stochf_last(values: np.ndarray, fastk: int, fastd: int) -> tuple[float, float]:
    """TA-Lib's fast %K and %D (SMA) over the whole of `values`: the last of each.

    TA-Lib 0.8 (compiled): K = ((v - lowest) / (highest - lowest)) * 100, and 0 where the
    range is within 1e-14 of the extremes' magnitude (its scale-aware zero test). %D is its
    SMA with a running total over every K of the series (add the new, subtract the oldest),
    so its last bits depend on all of them: all are computed.
    """
    count = values.shape[0] - fastk + 1
    ks = np.empty(count)
    for j in range(count):
        end = j + fastk - 1  # index of "today"
        lowest = values[j]
        highest = lowest
        for i in range(j + 1, end + 1):
            if values[i] < lowest:
                lowest = values[i]
            if values[i] > highest:
                highest = values[i]
        diff = highest - lowest
        if abs(diff) <= EPSILON * (abs(highest) + abs(lowest)):  # TA_IS_ZERO_SCALED
            ks[j] = 0.0
        else:
            ks[j] = ((values[end] - lowest) / diff) * 100.0
    total = 0.0
    for i in range(fastd - 1):
        total += ks[i]
    last_d = 0.0
    for i in range(fastd - 1, count):
        total += ks[i]
        last_d = total / fastd
        total -= ks[i - fastd + 1]
    return ks[count - 1], last_d


@njit(cache=_CACHE, error_model="numpy")
def _roc_window(x: np.ndarray, s: int, period: int) -> float:
    previous = x[s]
    return (x[s + period] / previous - 1.0) * 100.0 if previous != 0.0 else 0.0


# --- every window -------------------------------------------------------------------------


@njit(cache=_CACHE, error_model="numpy")
def sma(x: np.ndarray, w: int, period: int, first: int, out: np.ndarray) -> None:
    for t in range(first, x.shape[0]):
        out[t - first] = _sma_window(x, t - w + 1, period)


@njit(cache=_CACHE, error_model="numpy")
def ema(x: np.ndarray, w: int, period: int, first: int, out: np.ndarray) -> None:
    """`_ema_window` for every row, BLOCK windows advanced side by side (SIMD)."""
    n = x.shape[0]
    k = 2.0 / (period + 1)
    prev = np.empty(BLOCK)
    for t0 in range(first, n, BLOCK):
        m = min(BLOCK, n - t0)
        s0 = t0 - w + 1
        for r in range(m):
            prev[r] = 0.0
        for i in range(period):
            for r in range(m):
                prev[r] += x[s0 + r + i]
        for r in range(m):
            prev[r] = prev[r] / period
        for i in range(period, w):
            for r in range(m):
                prev[r] = _fma(k, x[s0 + r + i] - prev[r], prev[r])
        for r in range(m):
            out[t0 + r - first] = prev[r]


@njit(cache=_CACHE, error_model="numpy")
def _rsi_seed(
    x: np.ndarray, s0: int, m: int, period: int, gain: np.ndarray, loss: np.ndarray
) -> None:
    """Wilder's first averages of BLOCK windows starting at s0, s0 + 1, ... (`_rsi_window`)."""
    inverse = 1.0 / period
    for r in range(m):
        gain[r] = 0.0
        loss[r] = 0.0
    for i in range(1, period + 1):
        for r in range(m):
            j = s0 + r + i
            diff = x[j] - x[j - 1]
            up = diff if diff > 0.0 else 0.0
            gain[r] += up
            loss[r] += up - diff
    for r in range(m):
        gain[r] *= inverse
        loss[r] *= inverse


@njit(cache=_CACHE, error_model="numpy")
def _rsi_value(gain: float, loss: float) -> float:
    total = loss + gain
    return (gain / total) * 100.0 if total > 0.0 else 0.0


@njit(cache=_CACHE, error_model="numpy")
def rsi(x: np.ndarray, w: int, period: int, first: int, out: np.ndarray) -> None:
    """`_rsi_window` for every row, BLOCK windows advanced side by side (SIMD)."""
    n = x.shape[0]
    inverse = 1.0 / period
    previous_weight = float(period - 1)
    gain = np.empty(BLOCK)
    loss = np.empty(BLOCK)
    for t0 in range(first, n, BLOCK):
        m = min(BLOCK, n - t0)
        s0 = t0 - w + 1
        _rsi_seed(x, s0, m, period, gain, loss)
        for i in range(period + 1, w):
            for r in range(m):
                j = s0 + r + i
                diff = x[j] - x[j - 1]
                up = diff if diff > 0.0 else 0.0
                gain[r] = (gain[r] * previous_weight + up) * inverse
                loss[r] = ((up - diff) + loss[r] * previous_weight) * inverse
        for r in range(m):
            out[t0 + r - first] = _rsi_value(gain[r], loss[r])


@njit(cache=_CACHE, error_model="numpy")
def macd(
    x: np.ndarray, w: int, fast: int, slow: int, signal: int, first: int,
    out_macd: np.ndarray, out_signal: np.ndarray, out_hist: np.ndarray,
) -> None:
    """`_macd_window` for every row, BLOCK windows advanced side by side (SIMD)."""
    n = x.shape[0]
    slow_k = 2.0 / (slow + 1)
    fast_k = 2.0 / (fast + 1)
    signal_k = 2.0 / (signal + 1)
    slow_ema = np.empty(BLOCK)
    fast_ema = np.empty(BLOCK)
    line = np.empty(BLOCK)
    signal_ema = np.empty(BLOCK)
    for t0 in range(first, n, BLOCK):
        m = min(BLOCK, n - t0)
        s0 = t0 - w + 1
        for r in range(m):
            slow_ema[r] = 0.0
            fast_ema[r] = 0.0
        for i in range(slow - fast):
            for r in range(m):
                slow_ema[r] += x[s0 + r + i]
        for i in range(slow - fast, slow):
            for r in range(m):
                value = x[s0 + r + i]
                fast_ema[r] += value
                slow_ema[r] += value
        for r in range(m):
            slow_ema[r] = slow_ema[r] / slow
            fast_ema[r] = fast_ema[r] / fast
            line[r] = fast_ema[r] - slow_ema[r]
            signal_ema[r] = 0.0 + line[r]
        for i in range(slow, slow + signal - 1):
            for r in range(m):
                value = x[s0 + r + i]
                f = _fma(fast_k, value - fast_ema[r], fast_ema[r])
                sl = _fma(slow_k, value - slow_ema[r], slow_ema[r])
                fast_ema[r] = f
                slow_ema[r] = sl
                signal_ema[r] += f - sl
        for r in range(m):
            signal_ema[r] = signal_ema[r] / signal
        for i in range(slow + signal - 1, w):
            for r in range(m):
                value = x[s0 + r + i]
                f = _fma(fast_k, value - fast_ema[r], fast_ema[r])
                sl = _fma(slow_k, value - slow_ema[r], slow_ema[r])
                fast_ema[r] = f
                slow_ema[r] = sl
                line[r] = f - sl
                signal_ema[r] = _fma(signal_k, line[r] - signal_ema[r], signal_ema[r])
        for r in range(m):
            out_macd[t0 + r - first] = line[r]
            out_signal[t0 + r - first] = signal_ema[r]
            out_hist[t0 + r - first] = line[r] - signal_ema[r]


@njit(cache=_CACHE, error_model="numpy")
def bbands(
    x: np.ndarray, w: int, period: int, deviations: float, first: int,
    out_upper: np.ndarray, out_middle: np.ndarray, out_lower: np.ndarray,
) -> None:
    for t in range(first, x.shape[0]):
        s = t - w + 1
        middle = _sma_window(x, s, period)
        spread = _stddev_window(x, s, period, middle) * deviations
        out_upper[t - first] = middle + spread
        out_middle[t - first] = middle
        out_lower[t - first] = middle - spread


@njit(cache=_CACHE, error_model="numpy")
def atr(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, w: int, period: int, first: int,
    out: np.ndarray,
) -> None:
    """`_atr_window` for every row, BLOCK windows advanced side by side (SIMD)."""
    n = close.shape[0]
    keep = (period - 1) / period
    new = 1.0 - keep
    prev = np.empty(BLOCK)
    for t0 in range(first, n, BLOCK):
        m = min(BLOCK, n - t0)
        s0 = t0 - w + 1
        for r in range(m):
            prev[r] = 0.0
        for i in range(1, 1 + period):
            for r in range(m):
                prev[r] += _true_range(high, low, close, s0 + r + i)
        for r in range(m):
            prev[r] = prev[r] / period
        for i in range(1 + period, w):
            for r in range(m):
                j = s0 + r + i
                hj = high[j]
                lj = low[j]
                cp = close[j - 1]
                greatest = hj - lj  # _true_range, branch-free so that it vectorises
                value = abs(cp - hj)
                greatest = value if value > greatest else greatest
                value = abs(lj - cp)
                greatest = value if value > greatest else greatest
                prev[r] = _fma(keep, prev[r], greatest * new)
        for r in range(m):
            out[t0 + r - first] = prev[r]


@njit(cache=_CACHE, error_model="numpy")
def adx(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, w: int, period: int, first: int,
    out: np.ndarray,
) -> None:
    """`_adx_window` for every row, BLOCK windows advanced side by side (SIMD).

    The same operations in the same order per window; the branches become selects, so the
    compiler vectorises the loop over windows. ADX is the costliest indicator (662 candles,
    seven divisions per candle).
    """
    n = close.shape[0]
    minus_dm = np.empty(BLOCK)
    plus_dm = np.empty(BLOCK)
    true_range = np.empty(BLOCK)
    adx_ = np.empty(BLOCK)
    for t0 in range(first, n, BLOCK):
        m = min(BLOCK, n - t0)
        s0 = t0 - w + 1
        for r in range(m):
            minus_dm[r] = 0.0
            plus_dm[r] = 0.0
            true_range[r] = 0.0
            adx_[r] = 0.0
        for i in range(1, period):
            for r in range(m):
                j = s0 + r + i
                diff_p = high[j] - high[j - 1]
                diff_m = low[j - 1] - low[j]
                if diff_m > 0 and diff_p < diff_m:
                    minus_dm[r] += diff_m
                elif diff_p > 0 and diff_p > diff_m:
                    plus_dm[r] += diff_p
                true_range[r] += _true_range(high, low, close, j)
        for i in range(period, w):
            accumulate = i < 2 * period  # the first `period` DX are summed, then averaged
            for r in range(m):
                j = s0 + r + i
                hj = high[j]
                lj = low[j]
                cp = close[j - 1]
                diff_p = hj - high[j - 1]
                diff_m = low[j - 1] - lj
                minus = minus_dm[r] - minus_dm[r] / period
                plus = plus_dm[r] - plus_dm[r] / period
                to_minus = (diff_m > 0) & (diff_p < diff_m)
                to_plus = (~to_minus) & (diff_p > 0) & (diff_p > diff_m)
                minus = minus + diff_m if to_minus else minus
                plus = plus + diff_p if to_plus else plus
                minus_dm[r] = minus
                plus_dm[r] = plus
                greatest = hj - lj
                value = abs(cp - hj)
                greatest = value if value > greatest else greatest
                value = abs(lj - cp)
                greatest = value if value > greatest else greatest
                tr = true_range[r] - true_range[r] / period + greatest
                true_range[r] = tr
                minus_di = 100.0 * (minus / tr)
                plus_di = 100.0 * (plus / tr)
                total = minus_di + plus_di
                dx = 100.0 * (abs(minus_di - plus_di) / total)
                defined = (not (-EPSILON < tr < EPSILON)) & (not (-EPSILON < total < EPSILON))
                previous = adx_[r]
                updated = previous + dx if accumulate else (previous * (period - 1) + dx) / period
                adx_[r] = updated if defined else previous
            if i == 2 * period - 1:
                for r in range(m):
                    adx_[r] = adx_[r] / period
        for r in range(m):
            out[t0 + r - first] = adx_[r]


@njit(cache=_CACHE, error_model="numpy")
def obv(close: np.ndarray, volume: np.ndarray, w: int, first: int, out: np.ndarray) -> None:
    for t in range(first, close.shape[0]):
        out[t - first] = _obv_window(close, volume, t - w + 1, w)


@njit(cache=_CACHE, error_model="numpy")
def mfi(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, w: int,
    period: int, first: int, out: np.ndarray,
) -> None:
    for t in range(first, close.shape[0]):
        out[t - first] = _mfi_window(high, low, close, volume, t - w + 1, period)


@njit(cache=_CACHE, error_model="numpy")
def stochrsi(
    x: np.ndarray, w: int, period: int, fastk: int, fastd: int, first: int,
    out_k: np.ndarray, out_d: np.ndarray,
) -> None:
    """`_rsi_window` then `_stochf_last` for every row, BLOCK windows side by side (SIMD).

    Each window's RSI values feed a ring of the last `fastk` (their min and max give %K) and
    %K values a ring of the last `fastd` (%D's running total adds the new and subtracts the
    oldest, as TA-Lib's SMA does).
    """
    n = x.shape[0]
    inverse = 1.0 / period
    previous_weight = float(period - 1)
    gain = np.empty(BLOCK)
    loss = np.empty(BLOCK)
    rsis = np.empty((fastk, BLOCK))
    ks = np.empty((fastd, BLOCK))
    total = np.empty(BLOCK)
    last_d = np.zeros(BLOCK)
    lows = np.empty(BLOCK)
    highs = np.empty(BLOCK)
    for t0 in range(first, n, BLOCK):
        m = min(BLOCK, n - t0)
        s0 = t0 - w + 1
        _rsi_seed(x, s0, m, period, gain, loss)
        for r in range(m):
            rsis[0, r] = _rsi_value(gain[r], loss[r])
            total[r] = 0.0
        count = 1  # RSI values so far
        for i in range(period + 1, w):
            slot = count % fastk
            for r in range(m):
                j = s0 + r + i
                diff = x[j] - x[j - 1]
                up = diff if diff > 0.0 else 0.0
                g = (gain[r] * previous_weight + up) * inverse
                lo = ((up - diff) + loss[r] * previous_weight) * inverse
                gain[r] = g
                loss[r] = lo
                rsis[slot, r] = _rsi_value(g, lo)
            count += 1
            if count < fastk:
                continue
            kc = count - fastk  # index of this %K
            for r in range(m):
                lows[r] = rsis[0, r]
                highs[r] = rsis[0, r]
            for q in range(1, fastk):
                for r in range(m):
                    v = rsis[q, r]
                    lows[r] = v if v < lows[r] else lows[r]
                    highs[r] = v if v > highs[r] else highs[r]
            for r in range(m):
                lowest = lows[r]
                highest = highs[r]
                diff = highest - lowest
                flat = abs(diff) <= EPSILON * (abs(highest) + abs(lowest))
                k = 0.0 if flat else ((rsis[slot, r] - lowest) / diff) * 100.0
                ks[kc % fastd, r] = k
                t = total[r] + k
                if kc >= fastd - 1:
                    last_d[r] = t / fastd
                    t -= ks[(kc - fastd + 1) % fastd, r]
                total[r] = t
        for r in range(m):
            out_k[t0 + r - first] = ks[(count - fastk) % fastd, r]
            out_d[t0 + r - first] = last_d[r]


@njit(cache=_CACHE, error_model="numpy")
def roc(x: np.ndarray, w: int, period: int, first: int, out: np.ndarray) -> None:
    for t in range(first, x.shape[0]):
        out[t - first] = _roc_window(x, t - w + 1, period)

"""The vectorised kernels (BLOCK windows side by side) equal their one-window functions, which
mirror TA-Lib's C code line by line: the readable algorithm and the fast one stay the same."""

from __future__ import annotations

import numpy as np

from features import indicator_kernels as k


def _series(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n) * (rng.random(n) < 0.7)))
    spread = np.abs(rng.normal(0, 0.005, n)) * close * (rng.random(n) < 0.8)
    return close + spread, close - spread, close


N, FIRST = 1_500, 700  # several blocks, the last one partial


def test_adx_block_equals_one_window_adx() -> None:
    high, low, close = _series(N)
    w = 662
    out = np.empty(N - FIRST)
    k.adx(high, low, close, w, 14, FIRST, out)
    expected = [k._adx_window(high, low, close, t - w + 1, w, 14) for t in range(FIRST, N)]
    np.testing.assert_array_equal(out, expected)


def test_rsi_and_stochrsi_blocks_equal_one_window_functions() -> None:
    _, _, close = _series(N, seed=4)
    w, period = 332, 14
    out = np.empty(N - FIRST)
    k.rsi(close, w, period, FIRST, out)
    last = np.empty(1)
    expected = []
    for t in range(FIRST, N):
        k._rsi_window(close, t - w + 1, w, period, last)
        expected.append(last[0])
    np.testing.assert_array_equal(out, expected)

    out_k, out_d = np.empty(N - FIRST), np.empty(N - FIRST)
    k.stochrsi(close, w, period, 5, 3, FIRST, out_k, out_d)
    values = np.empty(w - period)
    for i, t in enumerate(range(FIRST, N)):
        k._rsi_window(close, t - w + 1, w, period, values)
        assert (out_k[i], out_d[i]) == k._stochf_last(values, 5, 3)


def test_ema_macd_and_atr_blocks_equal_one_window_functions() -> None:
    high, low, close = _series(N, seed=5)
    out = np.empty(N - FIRST)
    k.ema(close, 251, 20, FIRST, out)
    np.testing.assert_array_equal(
        out, [k._ema_window(close, t - 250, 251, 20) for t in range(FIRST, N)])
    k.atr(high, low, close, 326, 14, FIRST, out)
    np.testing.assert_array_equal(
        out, [k._atr_window(high, low, close, t - 325, 326, 14) for t in range(FIRST, N)])
    lines, signals, hists = np.empty(N - FIRST), np.empty(N - FIRST), np.empty(N - FIRST)
    k.macd(close, 645, 12, 26, 9, FIRST, lines, signals, hists)
    expected = [k._macd_window(close, t - 644, 645, 12, 26, 9) for t in range(FIRST, N)]
    np.testing.assert_array_equal(np.c_[lines, signals, hists], np.array(expected))

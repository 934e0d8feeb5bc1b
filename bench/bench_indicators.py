"""Benchmark of the indicator evaluation on one core; prints candles/s and the ratio.

    .venv/bin/python bench/bench_indicators.py [--candles 20000] [--seed 7]

The same synthetic series of `--candles` one-minute candles (a random walk around 20,000 with
spreads and log-normal volumes) goes through:

1. the per-row reference (`features.indicators_reference.compute_indicators_per_row`: TA-Lib
   called once per row and indicator over that indicator's warm-up window), and
2. the compiled evaluation the engines use (`features.indicators.compute_indicators`: TA-Lib's
   algorithms over every window at once, numba), after one untimed call that loads or compiles
   the kernels; timed 5 times, the median is reported (one call takes a fraction of a second,
   so a time slice lost to another process on this shared machine would swing a single figure;
   the reference's one long run averages that out).

Both run in this process, on one core (numba's kernels are single-threaded; BLAS is not used).
The bench checks that both give the same values (relative 1e-9, NaN at the same places) and
prints candles/s of each, the ratio (target: at least 50x) and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from features.indicators import INDICATOR_COLUMNS, compute_indicators  # noqa: E402
from features.indicators_reference import compute_indicators_per_row  # noqa: E402


def synthetic_candles(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 20_000 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rng.normal(0, 0.001, n)) * close
    return {"open": open_, "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread, "close": close,
            "volume": rng.lognormal(0, 1, n)}


def timed(function: object, candles: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
    t0 = time.perf_counter()
    values = function(candles)  # type: ignore[operator]
    return time.perf_counter() - t0, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candles", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    candles = synthetic_candles(args.candles, args.seed)
    print(f"indicator benchmark: {args.candles:,} candles, one core, "
          f"load average {os.getloadavg()[0]:.2f}")
    compute_indicators(synthetic_candles(1_000, 1))  # loads (or compiles) the kernels
    runs = [timed(compute_indicators, candles) for _ in range(5)]
    fast_s, fast = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
    reference_s, reference = timed(compute_indicators_per_row, candles)
    worst = 0.0
    for column in INDICATOR_COLUMNS:
        a, b = fast[column], reference[column]
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            raise SystemExit(f"{column}: NaN at different places")
        defined = ~np.isnan(b)
        diff = np.abs(a[defined] - b[defined])
        scale = np.abs(b[defined])
        nonzero = diff > 0
        worst = max(worst, float(np.max(diff[nonzero] / scale[nonzero], initial=0.0)))
    if worst > 1e-9:
        raise SystemExit(f"values differ: largest relative difference {worst:.3g}")
    print(f"  per-row TA-Lib (reference): {reference_s:8.2f} s  "
          f"{args.candles / reference_s:>12,.0f} candles/s")
    print(f"  compiled (compute_indicators, median of 5): {fast_s:5.3f} s  "
          f"{args.candles / fast_s:>12,.0f} candles/s")
    print(f"  ratio: {reference_s / fast_s:,.0f}x (target >= 50x); largest relative difference "
          f"{worst:.2g}; load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

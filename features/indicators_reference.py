"""The reference evaluation of the indicators: TA-Lib called once per row and indicator.

This is the definition of `features.indicators` evaluated literally: for row `t`, TA-Lib's
function over exactly the `warmup` candles ending at `t`, its last output value. It costs
about a millisecond per candle (a Python loop over rows), so the engines use
`features.indicators.compute_indicators`, which computes the same values in compiled code;
tests and `bench/bench_indicators.py` hold that one to this one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from features.indicators import INDICATOR_COLUMNS, INDICATORS, INPUT_COLUMNS


def compute_indicators_per_row(
    candles: Mapping[str, np.ndarray], start: int = 0
) -> dict[str, np.ndarray]:
    """Indicator values for rows `start..n-1`, as `compute_indicators`, by TA-Lib per row."""
    n = len(candles["close"])
    if not 0 <= start <= n:
        raise ValueError(f"start {start} outside 0..{n}")
    series = {
        name: np.ascontiguousarray(candles[name], dtype=np.float64) for name in INPUT_COLUMNS
    }
    out = {column: np.full(n - start, np.nan) for column in INDICATOR_COLUMNS}
    for spec in INDICATORS:
        first_row = max(start, spec.warmup - 1)
        for t in range(first_row, n):
            window = {name: col[t - spec.warmup + 1 : t + 1] for name, col in series.items()}
            for column, values in spec.run(window).items():
                out[column][t - start] = values[-1]
    return out

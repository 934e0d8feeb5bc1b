"""The population stability index computed apart from `orchestration.psi`, for the drift tests:
written from its definition with pandas (`pd.cut`) rather than `searchsorted`, and fed from
the Delta tables read with delta-rs rather than through Feast's training sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
from deltalake import DeltaTable


def independent_psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI = sum (a - e) ln(a / e) over the reference's decile bins (right-closed, open at both
    ends), shares floored at 1e-4, NaN left out."""
    reference, current = reference[np.isfinite(reference)], current[np.isfinite(current)]
    edges = sorted(set(np.percentile(reference, [100 * k / bins for k in range(1, bins)])))
    cut = [-np.inf, *edges, np.inf]
    shares = [np.maximum(pd.Series(pd.cut(v, cut, right=True)).value_counts(sort=False)
                         .to_numpy() / len(v), 1e-4) for v in (reference, current)]
    return float(np.sum((shares[1] - shares[0]) * np.log(shares[1] / shares[0])))


def minute_values(table: str, pair: str, column: str, start: str, end: str) -> np.ndarray:
    """`column` of `pair`'s one-minute rows whose window ends in [start, end) (UTC days), read
    from the Delta table at `table`: the rows a training set over that range has."""
    frame = DeltaTable(table).to_pandas(filters=[("pair", "=", pair), ("window_ms", "=", 60_000)])
    ends = pd.to_datetime(frame["window_end_ms"], unit="ms", utc=True)
    keep = (ends >= pd.Timestamp(start, tz="UTC")) & (ends < pd.Timestamp(end, tz="UTC"))
    return frame.loc[keep, column].to_numpy(dtype=float)

"""Population stability index (PSI): how far a feature's distribution moved from a reference.

    PSI = sum over bins of (a_i - e_i) * ln(a_i / e_i)

where `e_i` is the share of the reference (expected) values in bin `i` and `a_i` the share of the
new (actual) values. Bins are the reference's deciles (quantile edges, so each holds about a tenth
of the reference), open at both ends so every new value falls in one. A share of zero is floored
at `EPSILON` (the logarithm is otherwise infinite). Rules of thumb: below 0.1 no shift, 0.1-0.2 a
moderate one, above 0.2 a major one. NaN values are left out of both sides.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import pandas as pd

EPSILON = 1e-4
BINS = 10


def bin_edges(expected: npt.ArrayLike, bins: int = BINS) -> npt.NDArray[np.float64]:
    """Inner edges: the reference's quantiles at 1/bins ... (bins-1)/bins, duplicates removed."""
    values = _finite(expected)
    if values.size == 0:
        raise ValueError("the reference has no finite value")
    quantiles = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(quantiles)


def shares(values: npt.ArrayLike, edges: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Share of `values` per bin: (-inf, e0], (e0, e1], ..., (e_last, inf); floored at EPSILON."""
    finite = _finite(values)
    if finite.size == 0:
        raise ValueError("no finite value to compare")
    counts = np.bincount(np.searchsorted(edges, finite, side="left"), minlength=edges.size + 1)
    return np.maximum(counts / finite.size, EPSILON)


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, bins: int = BINS) -> float:
    """The PSI of `actual` against `expected` over the reference's quantile bins."""
    edges = bin_edges(expected, bins)
    e, a = shares(expected, edges), shares(actual, edges)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_per_feature(reference: pd.DataFrame, current: pd.DataFrame,
                    features: Iterable[str], bins: int = BINS) -> dict[str, float]:
    """PSI of every feature column; a column missing from either frame is an error naming it."""
    result: dict[str, float] = {}
    for name in features:
        for side, frame in (("reference", reference), ("current", current)):
            if name not in frame.columns:
                raise KeyError(f"feature {name!r} missing from the {side} set")
        try:
            result[name] = psi(reference[name].to_numpy(dtype=float),
                               current[name].to_numpy(dtype=float), bins)
        except ValueError as error:
            raise ValueError(f"feature {name!r}: {error}") from error
    return result


def _finite(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]

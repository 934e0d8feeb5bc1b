"""Bin edges: how FA, FI, FD values become the integers 0..9 the model sees.

Each feature is binned **uniformly** into :data:`BIN_COUNT` buckets over a declared range
`[low, high]`: the 9 inner edges are `low + k * (high - low) / 10` for k = 1..9, and a value's
bin is the number of inner edges `<=` it (so `< e1` -> 0, `>= e9` -> 9: values outside the range
clip to the end buckets; NaN is rejected). A set of ranges for FA, FI, FD is a versioned
:class:`BinEdges`; the version travels with every feature row, so a model is always paired with
the binning it was trained on. Edges come from configuration (:data:`DEFAULT_EDGES`, a JSON file)
or are learned from history by the batch layer (:func:`learn_edges`, robust quantile range).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.sensors.schemas import BIN_COUNT, FEATURES


@dataclass(frozen=True)
class BinRange:
    """A uniform binning range for one feature."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"bin range needs finite low < high, got [{self.low}, {self.high}]")

    def inner_edges(self) -> np.ndarray:
        """The 9 inner edges, computed in one fixed way so every engine gets the same floats."""
        k = np.arange(1, BIN_COUNT, dtype=np.float64)
        return self.low + k * ((self.high - self.low) / BIN_COUNT)

    def bin(self, values: np.ndarray) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)
        if np.isnan(x).any():
            raise ValueError("cannot bin NaN")
        return np.searchsorted(self.inner_edges(), x, side="right").astype(np.int64)


@dataclass(frozen=True)
class BinEdges:
    """Versioned uniform bin ranges for FA, FI, FD."""

    version: str
    ranges: dict[str, BinRange]

    def __post_init__(self) -> None:
        if not self.version or "|" in self.version:
            raise ValueError("bin edges need a non-empty version without '|'")
        missing = set(FEATURES) - set(self.ranges)
        if missing:
            raise ValueError(f"bin edges {self.version} lack ranges for {sorted(missing)}")

    def bin(self, feature: str, values: np.ndarray) -> np.ndarray:
        return self.ranges[feature].bin(values)

    def to_json(self) -> dict[str, object]:
        return {"version": self.version,
                "ranges": {f: [r.low, r.high] for f, r in sorted(self.ranges.items())}}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> BinEdges:
        ranges = data["ranges"]
        if not isinstance(ranges, dict):
            raise ValueError("bin edges: 'ranges' must be an object")
        return cls(str(data["version"]),
                   {f: BinRange(float(lo), float(hi)) for f, (lo, hi) in ranges.items()})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> BinEdges:
        return cls.from_json(json.loads(path.read_text()))


# Configured edges for the simulator's value scale (SZ around 20..80 units, see
# features.sensors.simulator): FA in units, FI in unit-seconds over <= 600 s, FD in
# units per second.
DEFAULT_EDGES = BinEdges(
    "config-v1",
    {"FA": BinRange(0.0, 100.0), "FI": BinRange(0.0, 60_000.0), "FD": BinRange(-0.1, 0.1)},
)


def learn_edges(version: str, fa: np.ndarray, fi: np.ndarray, fd: np.ndarray,
                tail: float = 0.005) -> BinEdges:
    """Uniform ranges between the `tail` and `1 - tail` quantiles of historical feature values
    (robust to outliers, which fall into the end buckets)."""
    ranges = {}
    for name, values in (("FA", fa), ("FI", fi), ("FD", fd)):
        x = np.asarray(values, dtype=np.float64)
        x = x[np.isfinite(x)]
        if len(x) == 0:
            raise ValueError(f"no finite {name} values to learn edges from")
        low, high = (float(q) for q in np.quantile(x, [tail, 1 - tail]))
        if high <= low:
            high = low + 1.0
        ranges[name] = BinRange(low, high)
    return BinEdges(version, ranges)

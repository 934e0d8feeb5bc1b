"""Fit the sensors pipeline's transparent baseline: a logistic regression over the 5 integers.

Training set (point-in-time correct, built with the same `features/` code as both engines): for
every SZ reading of the simulated history, the vector the join would hold at that event time —
SX and SY as of that time (the latest reading with event time <= t), and the reading's own FA,
FI, FD bins — labelled with the simulator's `incident` flag. Readings before a client's first SX
or SY are left out (the join makes no prediction without all five fields).

The model is stored as JSON (`features.sensors.model.LogisticAlertModel` plus training facts):
its version is derived from its parameters and bin edges, so the same fit gets the same version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.sensors.binning import DEFAULT_EDGES, BinEdges
from features.sensors.model import LogisticAlertModel
from features.sensors.schemas import FEATURES, VECTOR_FIELDS
from features.sensors.window_math import sort_readings, window_features


@dataclass(frozen=True)
class TrainingReport:
    rows: int
    positives: int
    auc: float
    accuracy_at_half: float
    majority_accuracy: float  # the naive baseline: never alert
    edges_version: str


def _codes(clients: pa.ChunkedArray, names: list[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[c] for c in clients.to_pylist()], dtype=np.int64)


def _as_of(codes: np.ndarray, ts: np.ndarray, src_codes: np.ndarray, src_ts: np.ndarray,
           src_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (code, ts) the latest source value with event time <= ts for the same code."""
    span = int(max(ts.max(), src_ts.max()) - min(ts.min(), src_ts.min())) + 1
    base = min(ts.min(), src_ts.min())
    order = np.lexsort((src_ts, src_codes))
    key = src_codes[order] * span + (src_ts[order] - base)
    pos = np.searchsorted(key, codes * span + (ts - base), side="right") - 1
    found = pos >= 0
    found[found] = src_codes[order][pos[found]] == codes[found]
    values = np.where(found, src_values[order][np.maximum(pos, 0)], -1)
    return values.astype(np.int64), found


@dataclass(frozen=True)
class SensorRows:
    """The training rows with their event time and client (for time-ordered splits)."""

    vectors: np.ndarray  # (n, 5) int64, VECTOR_FIELDS order
    labels: np.ndarray  # (n,) int
    timestamps_ms: np.ndarray  # (n,) int64
    clients: np.ndarray  # (n,) object


def training_rows(events: pa.Table, edges: BinEdges = DEFAULT_EDGES) -> SensorRows:
    """The rows of :func:`training_set` plus each row's event time and client."""
    names = sorted(set(events["client"].to_pylist()))
    by = {s: events.filter(pc.equal(events["sensor"], s)) for s in ("SX", "SY", "SZ")}
    sz = by["SZ"]
    codes = _codes(sz["client"], names)
    ts = sz["timestamp_ms"].to_numpy()
    values = sz["value"].to_numpy()
    labels = sz["incident"].to_numpy(zero_copy_only=False).astype(int)
    order = sort_readings(codes, ts, values)
    codes, ts, values, labels = codes[order], ts[order], values[order], labels[order]
    feats = window_features(codes, ts, values)
    columns = {"FA": feats.fa, "FI": feats.fi, "FD": feats.fd}
    vectors = np.empty((len(ts), len(VECTOR_FIELDS)), dtype=np.int64)
    complete = np.ones(len(ts), dtype=bool)
    for k, sensor in enumerate(("SX", "SY")):
        src = by[sensor]
        vectors[:, k], found = _as_of(codes, ts, _codes(src["client"], names),
                                      src["timestamp_ms"].to_numpy(), src["value"].to_numpy())
        complete &= found
    for k, name in enumerate(FEATURES, start=2):
        vectors[:, k] = edges.bin(name, columns[name])
    clients = np.array(names, dtype=object)[codes]
    return SensorRows(vectors[complete], labels[complete], ts[complete].astype(np.int64),
                      clients[complete])


def training_set(events: pa.Table, edges: BinEdges = DEFAULT_EDGES
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n, 5) int64, labels (n,) int) from simulator events (see the module doc)."""
    rows = training_rows(events, edges)
    return rows.vectors, rows.labels


def fit(vectors: np.ndarray, labels: np.ndarray, edges: BinEdges = DEFAULT_EDGES,
        version: str | None = None) -> tuple[LogisticAlertModel, TrainingReport]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    clf = LogisticRegression(max_iter=1_000, C=1.0)
    clf.fit(vectors.astype(np.float64), labels)
    intercept = round(float(clf.intercept_[0]), 6)
    coefficients = tuple(round(float(c), 6) for c in clf.coef_[0])
    if version is None:
        digest = hashlib.sha256(json.dumps([intercept, coefficients, edges.version]).encode())
        version = f"logistic-{edges.version}-{digest.hexdigest()[:10]}"
    model = LogisticAlertModel(version, intercept, coefficients)
    p = model.predict_proba(vectors)
    report = TrainingReport(
        rows=len(labels), positives=int(labels.sum()), auc=float(roc_auc_score(labels, p)),
        accuracy_at_half=float(((p >= 0.5) == labels).mean()),
        majority_accuracy=float(max(labels.mean(), 1 - labels.mean())),
        edges_version=edges.version)
    return model, report


def train_on_simulation(clients: int = 300, minutes: int = 240, seed: int = 0,
                        version: str | None = None, edges: BinEdges = DEFAULT_EDGES
                        ) -> tuple[LogisticAlertModel, TrainingReport]:
    from streaming.sources.sensors_simulator import SimulatorConfig, simulate

    events = simulate(SimulatorConfig(clients=clients, duration_ms=minutes * 60_000, seed=seed,
                                      incidents_per_hour=1.0))
    vectors, labels = training_set(events, edges)
    return fit(vectors, labels, edges, version)


def save_model(path: Path, model: LogisticAlertModel, report: TrainingReport) -> None:
    """The model JSON (loadable by `LogisticAlertModel.load`) with its training facts."""
    path.write_text(json.dumps({**model.to_json(), "training": asdict(report)}, indent=2) + "\n")

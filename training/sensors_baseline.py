"""Fit the sensors pipeline's transparent baseline: a logistic regression over the 5 integers.

Training set (built with the same `features/` code as both engines): for every SZ reading of
the history, the vector the stream's join holds when it predicts for that reading — the
reading's own FA, FI, FD bins, and SX and SY as of the moment those features are final — labelled
with the reading's `incident` flag. The window processor emits a reading's features once the
client's stream time reaches `t + grace` (the client's next reading at or after that time), and
the join pairs them with the latest SX and SY it holds then: SX and SY as of that reading's event
time, not as of `t` (in a live stream they are seconds newer; training on `t` would teach the
model a vector it is never served: measured on the simulator, a third of the stream's vectors
differed). Readings before a client's first SX or SY are left out (the join makes no prediction
without all five fields).

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
from features.sensors.window_math import DEFAULT_GRACE_MS, sort_readings, window_features


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


def features_final_at(codes: np.ndarray, ts: np.ndarray, grace_ms: int) -> np.ndarray:
    """Per SZ reading (sorted by client code, then event time): the event time at which the
    window processor emits its features — that of the client's first reading at or after
    `t + grace` (its stream time reaches `t + grace`: `features.windows.SlidingWindow`), or
    `t + grace` when none follows (emitted on idleness)."""
    if len(ts) == 0:
        return ts.copy()
    base = int(ts.min())
    span = int(ts.max()) + grace_ms - base + 1
    key = codes * span + (ts - base)
    pos = np.searchsorted(key, key + grace_ms, side="left")
    found = pos < len(ts)
    found[found] = codes[pos[found]] == codes[found]
    return np.where(found, ts[np.minimum(pos, len(ts) - 1)], ts + grace_ms).astype(np.int64)


@dataclass(frozen=True)
class SensorRows:
    """The training rows with their event time and client (for time-ordered splits)."""

    vectors: np.ndarray  # (n, 5) int64, VECTOR_FIELDS order
    labels: np.ndarray  # (n,) int
    timestamps_ms: np.ndarray  # (n,) int64
    clients: np.ndarray  # (n,) object


def training_rows(events: pa.Table, edges: BinEdges = DEFAULT_EDGES,
                  grace_ms: int = DEFAULT_GRACE_MS) -> SensorRows:
    """The rows of :func:`training_set` plus each row's event time and client (`grace_ms`: the
    window processor's grace, which decides when the join sees a reading's features)."""
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
    served_at = features_final_at(codes, ts, grace_ms)
    vectors = np.empty((len(ts), len(VECTOR_FIELDS)), dtype=np.int64)
    complete = np.ones(len(ts), dtype=bool)
    for k, sensor in enumerate(("SX", "SY")):
        src = by[sensor]
        vectors[:, k], found = _as_of(codes, served_at, _codes(src["client"], names),
                                      src["timestamp_ms"].to_numpy(), src["value"].to_numpy())
        complete &= found
    for k, name in enumerate(FEATURES, start=2):
        vectors[:, k] = edges.bin(name, columns[name])
    clients = np.array(names, dtype=object)[codes]
    return SensorRows(vectors[complete], labels[complete], ts[complete].astype(np.int64),
                      clients[complete])


def training_set(events: pa.Table, edges: BinEdges = DEFAULT_EDGES,
                 grace_ms: int = DEFAULT_GRACE_MS) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n, 5) int64, labels (n,) int) from simulator events (see the module doc)."""
    rows = training_rows(events, edges, grace_ms)
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
    from features.sensors.simulator import SimulatorConfig, simulate

    events = simulate(SimulatorConfig(clients=clients, duration_ms=minutes * 60_000, seed=seed,
                                      incidents_per_hour=1.0))
    vectors, labels = training_set(events, edges)
    return fit(vectors, labels, edges, version)


def save_model(path: Path, model: LogisticAlertModel, report: TrainingReport) -> None:
    """The model JSON (loadable by `LogisticAlertModel.load`) with its training facts."""
    path.write_text(json.dumps({**model.to_json(), "training": asdict(report)}, indent=2) + "\n")

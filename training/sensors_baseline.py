"""Fit the sensors pipeline's transparent baseline: a logistic regression over the 5 integers.

Training set: one row per event the stream predicts on (every accepted SX, SY and SZ reading
whose vector is complete), built from the same events by the rule the join serves,
`features.sensors.vectors.RULE`:

    The vector of an event of client c at event time t (an SX, SY or SZ reading) is c's SX and
    SY as of t (the reading with the latest event time at or before t, the largest value at a
    tie) and the FA, FI, FD bins of the 10-minute window ending at c's latest SZ reading at or
    before t, counting only readings not late (per topic, in log order: late is grace or more
    behind the client's stream time, or the max lateness or more behind the partition's).

The events table's row order is the order the readings reached their topics (lateness is judged
in it, per topic, as the stream does); `grace_ms`, `max_lateness_ms` and `partitions` (each
topic's partition count: a client's partition is `features.partitioning.partition_for`) are
the stream's. Each row is labelled
with its event's `incident` flag. The join's final prediction for every event is this row
(property-tested over any interleaving: `tests/unit/test_sensors_exact_join.py`).

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

from features.sensors.binning import DEFAULT_EDGES, BinEdges
from features.sensors.model import LogisticAlertModel
from features.sensors.schemas import DEFAULT_SENSOR_PARTITIONS
from features.sensors.vectors import event_vectors
from features.sensors.window_math import DEFAULT_GRACE_MS, DEFAULT_MAX_LATENESS_MS


@dataclass(frozen=True)
class TrainingReport:
    rows: int
    positives: int
    auc: float
    accuracy_at_half: float
    majority_accuracy: float  # the naive baseline: never alert
    edges_version: str


@dataclass(frozen=True)
class SensorRows:
    """The training rows with their event's client, time and trigger (for time-ordered
    splits), sorted by (client, event time, trigger)."""

    vectors: np.ndarray  # (n, 5) int64, VECTOR_FIELDS order
    labels: np.ndarray  # (n,) int
    timestamps_ms: np.ndarray  # (n,) int64
    clients: np.ndarray  # (n,) object
    triggers: np.ndarray  # (n,) object: SX, SY or SZ


def training_rows(events: pa.Table, edges: BinEdges = DEFAULT_EDGES,
                  grace_ms: int = DEFAULT_GRACE_MS, *,
                  max_lateness_ms: int = DEFAULT_MAX_LATENESS_MS,
                  partitions: int = DEFAULT_SENSOR_PARTITIONS) -> SensorRows:
    """The rows of :func:`training_set` plus each row's client, event time and trigger
    (`events`: columns sensor, client, timestamp_ms, value, incident, in arrival order, and
    optionally `partition`; `grace_ms`, `max_lateness_ms` and `partitions`: the stream's grace,
    max lateness and partition count, which decide the late readings)."""
    rows = event_vectors(events, edges, grace_ms, max_lateness_ms=max_lateness_ms,
                         partition_count=partitions)
    labels = np.zeros(len(rows), dtype=bool)
    incident = events["incident"].to_numpy(zero_copy_only=False).astype(bool)
    hit = rows.row_of_input >= 0
    np.logical_or.at(labels, rows.row_of_input[hit], incident[hit])
    return SensorRows(rows.vectors, labels.astype(int), rows.timestamps_ms, rows.clients,
                      rows.triggers)


def training_set(events: pa.Table, edges: BinEdges = DEFAULT_EDGES,
                 grace_ms: int = DEFAULT_GRACE_MS, *,
                 max_lateness_ms: int = DEFAULT_MAX_LATENESS_MS,
                 partitions: int = DEFAULT_SENSOR_PARTITIONS) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n, 5) int64, labels (n,) int) from simulator events (see the module doc)."""
    rows = training_rows(events, edges, grace_ms, max_lateness_ms=max_lateness_ms,
                         partitions=partitions)
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

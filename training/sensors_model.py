"""The sensors alert model: XGBoost on the `sensors_alert_v1` vector (simulator or SKAB).

Rows: one per event the stream predicts on (every SX, SY and SZ reading with a complete
vector), the vector the join serves for it (`features.sensors.vectors.RULE`: SX and SY as of the
event's time, the FA/FI/FD bins of the client's latest SZ reading at or before it), labelled with
the event's incident flag — built by `training.sensors_baseline.training_rows`, the code the
logistic baseline uses, from the simulator's events or the real SKAB experiments
(`features.sensors.skab`, each experiment a client, its `anomaly` column the label).
The vector is not read back through Feast: the simulator's history is not in Delta tables, and
building it with the `features/` code directly gives the same values the service would serve
(see training/README.md).

Baselines: never alert (the train part's alert rate, a constant) and the logistic regression of
`sensors_baseline`, fitted on the same train part.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from features.model_contract import FEATURE_SERVICES, feature_columns
from features.sensors.schemas import VECTOR_FIELDS
from features.sensors.window_math import DEFAULT_GRACE_MS
from serving.feast_definitions import definitions
from serving.settings import FeastSettings
from training.progress import report
from training.results import TrainResult
from training.run import PreparedData, train_and_register
from training.sensors_baseline import SensorRows, fit, training_rows
from training.settings import TrainingSettings
from training.splits import TimeSplit

SensorsSource = Literal["simulator", "skab"]


def contract_columns() -> list[str]:
    """`sensors_alert_v1`'s columns (`sensor_sx__SX` ...), checked against VECTOR_FIELDS."""
    _, _, services = definitions(FeastSettings())
    service = next(s for s in services if s.name == FEATURE_SERVICES["sensors"])
    columns = feature_columns([(p.name_to_use(), [f.name for f in p.features])
                               for p in service.feature_view_projections])
    stems = [c.split("__", 1)[1].removesuffix("_bin") for c in columns]
    if stems != list(VECTOR_FIELDS):
        raise ValueError(f"{service.name} columns {columns} do not follow {VECTOR_FIELDS}")
    return columns


def events_of(source: SensorsSource, *, clients: int, minutes: int, seed: int,
              skab_dir: Path | None) -> tuple[pa.Table, dict[str, Any]]:
    """The raw SX/SY/SZ events and facts about where they came from."""
    if source == "simulator":
        from features.sensors.simulator import SimulatorConfig, simulate

        config = SimulatorConfig(clients=clients, duration_ms=minutes * 60_000, seed=seed,
                                 incidents_per_hour=1.0)
        facts: dict[str, Any] = {"source": "simulator", "clients": clients, "minutes": minutes,
                                 "seed": seed, "incidents_per_hour": config.incidents_per_hour}
        return simulate(config), facts
    if source == "skab":
        from features.sensors.skab import DEFAULT_DIR, skab_events, skab_files

        folder = skab_dir or DEFAULT_DIR
        files = skab_files(folder)
        digest = hashlib.sha256()
        for path in files:
            digest.update(f"{path.relative_to(folder)}:{path.stat().st_size}\n".encode())
        facts = {"source": "skab", "dir": str(folder), "files": len(files),
                 "files_digest": digest.hexdigest()}
        return skab_events(folder), facts
    raise ValueError(f"unknown sensors source {source!r}: simulator or skab")


def prepare(rows: SensorRows, facts: dict[str, Any], gap_ms: int) -> PreparedData:
    """The labelled rows of the sensors model (see the module docstring)."""
    if len(rows.labels) == 0:
        raise ValueError("no event has all five vector fields: more history is needed")
    order = np.lexsort((rows.clients.astype(str), rows.timestamps_ms))
    vectors, labels = rows.vectors[order], rows.labels[order]
    columns = contract_columns()
    features = pd.DataFrame(vectors.astype(np.float64), columns=columns)

    def baselines(parts: TimeSplit) -> dict[str, np.ndarray]:
        logistic, _ = fit(vectors[parts.train], labels[parts.train], version="baseline")
        return {"logistic": logistic.predict_proba(vectors[parts.test])}

    record = {**facts, "feature_service": FEATURE_SERVICES["sensors"], "features": columns,
              "rows": len(labels), "positives": int(labels.sum()),
              "start_ms": int(rows.timestamps_ms.min()), "end_ms": int(rows.timestamps_ms.max())}
    return PreparedData(
        pipeline="sensors",
        features=features,
        labels=labels.astype(np.int64),
        times=rows.timestamps_ms[order],
        keys=rows.clients[order],
        gap_ms=gap_ms,
        baselines=baselines,
        source_tags={**facts, "feature_service": FEATURE_SERVICES["sensors"]},
        record=record,
        params={f"data_{k}": v for k, v in facts.items() if k != "files_digest"},
        majority_name="never_alert",
    )


def train_sensors(
    source: SensorsSource = "simulator",
    *,
    clients: int = 300,
    minutes: int = 240,
    skab_dir: Path | None = None,
    tracking_uri: str | None = None,
    promotion_metric: str | None = None,
    promotion_margin: float | None = None,
    seed: int | None = None,
    settings: TrainingSettings | None = None,
) -> TrainResult:
    """Train, evaluate, log, register and promote a sensors model (None: the settings' value).

    `clients`, `minutes` and `seed` shape the simulated history (source "simulator");
    `skab_dir` the SKAB folder (source "skab"; default the shared data)."""
    base = settings or TrainingSettings()
    overrides = {k: v for k, v in (("promotion_metric", promotion_metric),
                                   ("promotion_margin", promotion_margin), ("seed", seed))
                 if v is not None}
    # validated (model_copy would not check a metric name or a horizon)
    settings = TrainingSettings.model_validate({**base.model_dump(), **overrides})
    # the simulator's and SKAB's events come in order: no reading is late, whatever the grace;
    # the stream's default is recorded with the run
    data = sensors_data(source, clients=clients, minutes=minutes, seed=settings.seed,
                        skab_dir=skab_dir, grace_ms=DEFAULT_GRACE_MS,
                        gap_ms=settings.sensors_gap_ms)
    return train_and_register(data, settings, tracking_uri)


def sensors_data(source: SensorsSource, *, clients: int, minutes: int, seed: int,
                 skab_dir: Path | None, grace_ms: int, gap_ms: int) -> PreparedData:
    """The labelled rows of a sensors run; what its record holds (the source and its
    facts: simulator parameters and seed, or the SKAB files' digest; the grace) rebuilds them
    (`training.reproduce`)."""
    started = time.perf_counter()
    report(f"events: {source}")
    events, facts = events_of(source, clients=clients, minutes=minutes, seed=seed,
                              skab_dir=skab_dir)
    report(f"training rows: the sensors_alert_v1 vector of {events.num_rows:,} events")
    data = prepare(training_rows(events, grace_ms=grace_ms), {**facts, "grace_ms": grace_ms},
                   gap_ms)
    data.seconds = {"training_set": time.perf_counter() - started}
    return data

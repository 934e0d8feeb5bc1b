"""Replay of real sensor series: the Skoltech Anomaly Benchmark (SKAB, water-pump testbed, 1 Hz).

Mapping (declared here, so every run maps the same way):
- each experiment file is a **client**, named `skab-<folder>-<file stem>` (e.g. `skab-valve1-3`);
- **SZ** = `Volume Flow RateRMS` (a continuous reading, about 0..134 l/min);
- **SX** = `Current` discretised into 10 uniform categories over :data:`SX_RANGE` (amperes);
- **SY** = `Thermocouple` discretised into 10 uniform categories over :data:`SY_RANGE` (deg C);
- the `anomaly` column (absent in the anomaly-free file: 0) is the `incident` label;
- event time: the `datetime` column, read as UTC, in epoch milliseconds.

Events come in event-time order (ties: client, then SX, SY, SZ), like the file replay of trades.
The data is read in place from `../shared/data/sensors/skab` (never copied into the repository).
It lives in `features/` because the speed layer (`braid sensors replay-skab`) and `training/`
(the alert model on real data) both read it, and neither may import the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features.sensors.binning import BinRange
from features.sensors.simulator import EVENT_SCHEMA

DEFAULT_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "sensors" / "skab"
SZ_COLUMN = "Volume Flow RateRMS"
SX_COLUMN, SX_RANGE = "Current", BinRange(0.0, 3.5)
SY_COLUMN, SY_RANGE = "Thermocouple", BinRange(20.0, 35.0)


def skab_files(data_dir: Path = DEFAULT_DIR) -> list[Path]:
    files = sorted(data_dir.glob("*/*.csv"))
    if not files:
        raise FileNotFoundError(f"no SKAB CSV files under {data_dir} (see shared/data/README.md)")
    return files


def client_name(path: Path) -> str:
    return f"skab-{path.parent.name}-{path.stem}"


def read_experiment(path: Path) -> pa.Table:
    """One file's SX, SY, SZ events (:data:`EVENT_SCHEMA`), in event-time order."""
    frame = pd.read_csv(path, sep=";")
    ts = pd.to_datetime(frame["datetime"], utc=True).astype("int64").to_numpy() // 1_000_000
    label = (frame["anomaly"].to_numpy() > 0) if "anomaly" in frame else np.zeros(len(ts), bool)
    series = (
        ("SX", SX_RANGE.bin(frame[SX_COLUMN].to_numpy()).astype(np.float64)),
        ("SY", SY_RANGE.bin(frame[SY_COLUMN].to_numpy()).astype(np.float64)),
        ("SZ", frame[SZ_COLUMN].to_numpy(dtype=np.float64)),
    )
    client = client_name(path)
    n = len(ts)
    sensors = np.repeat(np.array([s for s, _ in series], dtype=object), n)
    values = np.concatenate([v for _, v in series])
    times = np.tile(ts, len(series))
    labels = np.tile(label, len(series))
    order = np.lexsort((np.repeat(np.arange(len(series)), n), times))
    return pa.table({
        "sensor": pa.array(sensors[order], pa.string()),
        "client": pa.array([client] * (n * len(series)), pa.string()),
        "timestamp_ms": pa.array(times[order], pa.int64()),
        "value": pa.array(values[order], pa.float64()),
        "incident": pa.array(labels[order], pa.bool_()),
    }, schema=EVENT_SCHEMA)


def skab_events(data_dir: Path = DEFAULT_DIR, limit_files: int | None = None) -> pa.Table:
    """All experiments' events merged by event time (ties: client name, then sensor)."""
    tables = [read_experiment(p) for p in skab_files(data_dir)[:limit_files]]
    table = pa.concat_tables(tables)
    return table.sort_by([("timestamp_ms", "ascending"), ("client", "ascending"),
                          ("sensor", "ascending")])

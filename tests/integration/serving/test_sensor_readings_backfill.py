"""The sensors backfill writes the SX/SY readings table that Feast's sensor_sx/sensor_sy read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from batch.sensors_backfill import run_backfill
from tests.integration.serving.offline_tables import local_repo
from training.training_sets import training_set

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _archive(root: Path, topic: str, partition: int,
             rows: list[tuple[str, int, float]]) -> None:
    """One archive object of `topic` as `streaming.sinks.gcs_parquet_archive` lays it out."""
    n = len(rows)
    table = pa.table({
        "partition": pa.array([partition] * n, pa.int32()),
        "offset": pa.array(range(n), pa.int64()),
        "key": pa.array([c for c, _, _ in rows], pa.string()),
        "message": pa.array([b"{}"] * n, pa.binary()),
        "kafka_timestamp_ms": pa.array([t for _, t, _ in rows], pa.int64()),
        "v": pa.array([1] * n, pa.int64()),
        "client": pa.array([c for c, _, _ in rows], pa.string()),
        "timestamp_ms": pa.array([t for _, t, _ in rows], pa.int64()),
        "value": pa.array([v for _, _, v in rows], pa.float64()),
    })
    folder = root / f"topic={topic}" / "date=2026-01-01"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"part-{partition:03d}-{0:020d}-{n - 1:020d}.parquet")


def test_backfill_writes_sx_sy_readings_and_training_sets_read_them_point_in_time(
        tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    _archive(archive, "SZ", 0, [("c1", T + s * 1000, 0.5 + s / 100) for s in range(0, 600, 5)])
    _archive(archive, "SX", 0, [
        ("c1", T + 10_000, 3.0),
        ("c1", T + 20_000, 5.0),
        ("c1", T + 20_000, 7.0),  # the same time again, later: the first one stays
        ("c1", T + 30_000, 2.5),  # not a category: dropped as the stream drops it
        ("c2", T + 15_000, 1.0),
    ])
    _archive(archive, "SY", 0, [("c1", T + 25_000, 4.0)])
    offline = tmp_path / "offline"
    run_backfill(str(archive), str(offline / "sensor_features"), start="2026-01-01",
                 end="2026-01-02", grace_ms=5_000, master="local[1]")
    table = DeltaTable(str(offline / "sensor_readings")).to_pyarrow_table().sort_by(
        [("sensor", "ascending"), ("client", "ascending"), ("timestamp_ms", "ascending")])
    assert table.select(["client", "timestamp_ms", "sensor", "SX", "SY"]).to_pylist() == [
        {"client": "c1", "timestamp_ms": T + 10_000, "sensor": "SX", "SX": 3, "SY": None},
        {"client": "c1", "timestamp_ms": T + 20_000, "sensor": "SX", "SX": 5, "SY": None},
        {"client": "c2", "timestamp_ms": T + 15_000, "sensor": "SX", "SX": 1, "SY": None},
        {"client": "c1", "timestamp_ms": T + 25_000, "sensor": "SY", "SX": None, "SY": 4},
    ]
    store = local_repo(tmp_path / "repo", offline)
    at = [T + 9_999, T + 10_000, T + 24_000, T + 26_000, T + 20_000 + 600_001]
    entity = pd.DataFrame({"client": ["c1"] * len(at),
                           "event_timestamp": pd.to_datetime(at, unit="ms", utc=True)})
    frame = training_set("sensors_alert_v1", entity_df=entity, store=store).frame
    sx = frame["sensor_sx__SX"].tolist()
    sy = frame["sensor_sy__SY"].tolist()
    # never a reading from after the row's time; an SY row never hides SX (and back); TTL 10 min
    assert [None if pd.isna(v) else int(v) for v in sx] == [None, 3, 5, 5, None]
    assert [None if pd.isna(v) else int(v) for v in sy] == [None, None, None, 4, 4]
    reference = store.get_historical_features(
        entity_df=entity, features=store.get_feature_service("sensors_alert_v1"),
        full_feature_names=True).to_df().sort_values("event_timestamp").reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, reference)

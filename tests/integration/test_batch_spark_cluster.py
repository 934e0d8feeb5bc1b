"""The backfills on a real Spark cluster: a standalone master and two workers (`infra`'s
`spark-master`, `spark-worker-1`, `spark-worker-2`, started by PID), the markets and the sensors
backfill `spark-submit`ted to `spark://...` with the properties file the project generates, and
their Delta tables equal to a `local[2]` run's, value for value.

One cluster for the module; the markets input is two real pairs' trades of one day (two files,
so tasks land on both executors), the sensors input a generated archive of two days."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch import delta_log
from batch.backfill import BackfillConfig, run_backfill
from batch.sensors_backfill import run_backfill as run_sensors_backfill
from batch.spark_conf import write_properties_file
from batch.spark_session import spark_session
from infra import stack
from infra.services import spark as spark_service
from infra.settings import StackSettings
from infra.testing import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "kraken-trades"
PAIRS = {"XBT/USD": "XBTUSD_kraken_2018_trades.sorted.csv",
         "ETH/USD": "ETHUSD_kraken_2018_trades.sorted.csv"}
DAY_START, DAY_END = 1525824000, 1525910400  # 2018-05-09 UTC
SENSOR_DAY = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    """A master and two workers on free ports, tied to this process (die_with_parent)."""
    settings = StackSettings(
        die_with_parent=True, state_dir=tmp_path_factory.mktemp("stack-spark"),
        services=[spark_service.MASTER, *spark_service.WORKERS],
        spark_master_port=free_port(), spark_master_ui_port=free_port(),
        spark_worker_ports=[free_port(), free_port()], health_timeout_s=180.0,
    )
    try:
        stack.up(settings, create_topics=False)
        yield settings
    finally:
        stack.down(settings)


BAD_ROW = "1525900000.0000,-1.00000,0.50000000,b,l,"  # a negative price: a rejected row


def trade_files(folder: Path) -> list[Path]:
    """Each pair's trades of 2018-05-09 and the evening before, one Kraken CSV per pair; the
    first file ends with a row the backfill rejects."""
    files: list[Path] = []
    for name in PAIRS.values():
        source = DATA / name
        if not source.exists():
            pytest.skip(f"real data {source} is absent")
        lines = source.read_text().splitlines()
        keep = [lines[0]] + [ln for ln in lines[1:]
                             if DAY_START - 7200 <= float(ln.split(",")[0]) < DAY_END]
        if not files:
            keep.append(BAD_ROW)
        path = folder / name
        path.write_text("\n".join(keep) + "\n")
        files.append(path)
    return files


def sensor_archive(root: Path) -> Path:
    """Two days of SZ, SX, SY readings of 12 clients on 2 partitions, laid out as
    `streaming.sinks.gcs_parquet_archive` writes them (seeded: the same every run)."""
    rng = np.random.default_rng(22)
    clients = [f"client-{i:02d}" for i in range(12)]
    for topic in ("SZ", "SX", "SY"):
        for day in range(2):
            for partition in range(2):
                mine = [c for i, c in enumerate(clients) if i % 2 == partition]
                stamps = np.sort(rng.integers(0, 86_400_000, size=400)) + SENSOR_DAY \
                    + day * 86_400_000
                who = rng.choice(mine, size=len(stamps))
                values = (rng.normal(0.0, 1.0, size=len(stamps)) if topic == "SZ"
                          else rng.integers(0, 5, size=len(stamps)).astype(float))
                n = len(stamps)
                first = day * 10_000
                table = pa.table({
                    "partition": pa.array([partition] * n, pa.int32()),
                    "offset": pa.array(np.arange(first, first + n), pa.int64()),
                    "key": pa.array(who, pa.string()),
                    "message": pa.array([b"{}"] * n, pa.binary()),
                    "kafka_timestamp_ms": pa.array(stamps, pa.int64()),
                    "v": pa.array([1] * n, pa.int64()),
                    "client": pa.array(who, pa.string()),
                    "timestamp_ms": pa.array(stamps, pa.int64()),
                    "value": pa.array(values, pa.float64()),
                })
                folder = root / f"topic={topic}" / f"date=2026-01-0{day + 1}"
                folder.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, folder / f"part-{partition:03d}-{first:020d}-"
                                                f"{first + n - 1:020d}.parquet")
    return root


def spark_submit(master: str, properties: Path, job: str, args: list[str]) -> str:
    """`spark-submit --master M --properties-file P batch/<job> ARGS` from the checkout; its
    stdout (the job's summary line)."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": str(REPO)}
    submit = str(Path(sys.executable).parent / "spark-submit")
    done = subprocess.run(
        [submit, "--master", master, "--properties-file", str(properties), f"batch/{job}", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def sorted_frame(uri: str, keys: list[str]) -> pd.DataFrame:
    table = delta_log.read_table(uri)
    return table.sort_by([(k, "ascending") for k in keys]).to_pandas()


@pytest.mark.timeout(1800)  # ~4 min on a quiet 2-core machine; 10+ min at a load of 20
def test_markets_and_sensors_backfills_on_a_standalone_cluster_equal_local_runs(
        cluster: StackSettings, tmp_path: Path) -> None:
    inputs = trade_files(tmp_path)
    archive = sensor_archive(tmp_path / "archive")
    properties = write_properties_file(tmp_path / "spark.properties")
    on_cluster, local = tmp_path / "cluster", tmp_path / "local"

    assert spark_service.alive_worker_ports(cluster) == set(cluster.spark_worker_ports)
    spark_submit(cluster.spark_master_url, properties, "backfill_trades.py", [
        "--input", *map(str, inputs), "--start", "2018-05-09", "--end", "2018-05-10",
        "--pairs", *PAIRS, "--durations", "1m", "1h", "--output", str(on_cluster),
        "--no-progress"])
    spark_submit(cluster.spark_master_url, properties, "sensors_backfill.py", [
        "--input", str(archive), "--output", str(on_cluster / "sensor_features"),
        "--start", "2026-01-01", "--end", "2026-01-03"])

    spark = spark_session("braid-tests", master="local[2]", shuffle_partitions=4)
    run_backfill(spark, BackfillConfig(
        inputs=[str(p) for p in inputs], start=date(2018, 5, 9), end=date(2018, 5, 10),
        pairs=list(PAIRS), output=str(local), durations_ms=[60_000, 3_600_000],
        show_progress=False))
    run_sensors_backfill(str(archive), str(local / "sensor_features"), start="2026-01-01",
                         end="2026-01-03", master="local[2]")

    market_keys = ["pair", "window_ms", "window_start_ms"]
    tables = {"candles": market_keys, "indicators": market_keys,
              "rejected_trades": ["source", "row_number"],
              "sensor_features": ["client", "timestamp_ms"],
              "sensor_readings": ["sensor", "client", "timestamp_ms"]}
    for name, keys in tables.items():
        got = sorted_frame(str(on_cluster / name), keys)
        want = sorted_frame(str(local / name), keys)
        if name == "rejected_trades":  # each run records its own id
            got, want = got.drop(columns=["run_id"]), want.drop(columns=["run_id"])
        assert len(want) == 1 if name == "rejected_trades" else len(want) > 100, name
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=name)
    # the work was the cluster's: each worker ran executors of both applications
    for worker in spark_service.WORKERS:
        apps = list((cluster.data_dir / worker).glob("app-*"))
        assert len(apps) == 2, (worker, apps)

"""`gs://` input and output of the backfill against the local GCS emulator (gcsfs + delta-rs
commits through a mirrored log), and staging of the Dataproc job's code."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from batch import delta_log
from batch.backfill import BackfillConfig, run_backfill
from batch.dataproc import DataprocTarget, stage_code
from batch.object_storage import filesystem_for
from batch.spark_session import spark_session
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA

pytestmark = pytest.mark.integration

XBT = (Path(__file__).resolve().parents[3] / "shared" / "data" / "kraken-trades"
       / "XBTUSD_kraken_2018_trades.sorted.csv")
needs_data = pytest.mark.skipif(not XBT.exists(), reason=f"real data {XBT} is absent")


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    yield spark_session("braid-tests", master="local[2]", shuffle_partitions=4)


def sorted_rows(table: pa.Table, schema: pa.Schema) -> pa.Table:
    return table.select(schema.names).cast(schema).sort_by(
        [("pair", "ascending"), ("window_ms", "ascending"), ("window_start_ms", "ascending")]
    )


def one_day_of_trades(tmp_path: Path) -> Path:
    """The XBT/USD trades of 2018-05-09 (and the evening before), as a Kraken CSV."""
    lines = XBT.read_text().splitlines()
    keep = [lines[0]] + [
        ln for ln in lines[1:] if 1525800000 <= float(ln.split(",")[0]) < 1525910400
    ]
    path = tmp_path / "XBTUSD_kraken_2018_trades.sorted.csv"
    path.write_text("\n".join(keep) + "\n")
    return path


@needs_data
def test_backfill_reads_and_writes_gs_paths_like_local_ones(
    spark: SparkSession, gcs_emulator, tmp_path: Path
) -> None:
    local_csv = one_day_of_trades(tmp_path)
    bucket = gcs_emulator.bucket
    fs = filesystem_for(f"gs://{bucket}")
    fs.put_file(str(local_csv), f"{bucket}/raw/{local_csv.name}")

    def run(inputs: list[str], output: str) -> dict[str, int]:
        return run_backfill(spark, BackfillConfig(
            inputs=inputs, start=date(2018, 5, 9), end=date(2018, 5, 10), pairs=["XBT/USD"],
            output=output, durations_ms=[60_000, 3_600_000], show_progress=False,
        )).table_versions

    remote = f"gs://{bucket}/offline"
    assert run([f"gs://{bucket}/raw/*.csv"], remote) == {
        "candles": 0, "indicators": 0, "rejected_trades": 0}
    assert run([f"gs://{bucket}/raw/"], remote)["candles"] == 1  # a re-run replaces the range
    run([str(local_csv)], str(tmp_path / "offline"))

    assert fs.exists(f"{bucket}/offline/candles/_delta_log/00000000000000000001.json")
    for name, schema in (("candles", CANDLE_ARROW_SCHEMA), ("indicators", INDICATOR_ARROW_SCHEMA)):
        got = sorted_rows(delta_log.read_table(f"{remote}/{name}"), schema)
        want = sorted_rows(delta_log.read_table(str(tmp_path / "offline" / name)), schema)
        assert got.num_rows > 1_000
        pd.testing.assert_frame_equal(got.to_pandas(), want.to_pandas(), check_exact=True)


def test_dataproc_code_is_staged_to_the_bucket(gcs_emulator) -> None:
    target = DataprocTarget("braid-test", "europe-west1", "c1", f"gs://{gcs_emulator.bucket}/jobs")
    code = stage_code(target, run_tag="t1")
    fs = filesystem_for(code.main_python_file_uri)
    assert fs.exists(code.main_python_file_uri[len("gs://"):])
    assert fs.size(code.python_file_uris[0][len("gs://"):]) > 10_000

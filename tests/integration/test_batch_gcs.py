"""The production GCS path against the local emulator (fake-gcs-server): the backfill reads
`gs://` input and writes its Delta tables to `gs://` with delta-spark through Hadoop's GCS
connector and Delta's GCS log store; delta-rs, DuckDB and Feast read them back; a commit of a
version that another writer created in the meantime fails (GCS preconditions), so the former
exists-then-put race is gone; and the Dataproc job's code is staged to the bucket."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from batch import delta_log
from batch.backfill import BackfillConfig, run_backfill
from batch.dataproc import DataprocTarget, stage_code
from batch.object_storage import filesystem_for
from batch.spark_session import gcs_connector_available, spark_session
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA
from infra.testing import GcsEmulator
from serving.duckdb_delta import configure_gcs

pytestmark = pytest.mark.integration

XBT = (Path(__file__).resolve().parents[3] / "shared" / "data" / "kraken-trades"
       / "XBTUSD_kraken_2018_trades.sorted.csv")
needs_data = pytest.mark.skipif(not XBT.exists(), reason=f"real data {XBT} is absent")


@pytest.fixture(scope="module")
def spark(gcs_emulator: GcsEmulator) -> Iterator[SparkSession]:
    """The process's local session, pointed at the emulator (`spark_session` applies
    `STORAGE_EMULATOR_HOST`, set by the emulator fixture, to an existing session too)."""
    session = spark_session("braid-tests", master="local[2]", shuffle_partitions=4)
    assert gcs_connector_available(session), "the gcs jar bundle: python -m infra.jars gcs"
    yield session


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
def test_backfill_writes_gs_with_delta_spark_and_duckdb_and_feast_read_it_back(
    spark: SparkSession, gcs_emulator: GcsEmulator, tmp_path: Path
) -> None:
    local_csv = one_day_of_trades(tmp_path)
    bucket = gcs_emulator.bucket
    prefix = f"{bucket}/{uuid.uuid4().hex[:8]}"
    fs = filesystem_for(f"gs://{bucket}")
    fs.put_file(str(local_csv), f"{prefix}/raw/{local_csv.name}")

    def run(inputs: list[str], output: str) -> dict[str, int]:
        return run_backfill(spark, BackfillConfig(
            inputs=inputs, start=date(2018, 5, 9), end=date(2018, 5, 10), pairs=["XBT/USD"],
            output=output, durations_ms=[60_000, 3_600_000], show_progress=False,
        )).table_versions

    remote = f"gs://{prefix}/offline"
    local = tmp_path / "offline"
    assert run([f"gs://{prefix}/raw/*.csv"], remote) == {
        "candles": 0, "indicators": 0, "rejected_trades": 0}
    assert run([f"gs://{prefix}/raw/"], remote)["candles"] == 1  # a re-run replaces the range
    run([str(local_csv)], str(local))

    # delta-spark's own log: commits and checkpoints' checksums, written through the connector
    log_dir = f"{prefix}/offline/candles/_delta_log"
    assert fs.exists(f"{log_dir}/00000000000000000001.json")
    assert fs.exists(f"{log_dir}/00000000000000000001.crc")
    history = spark.sql(f"DESCRIBE HISTORY delta.`{remote}/candles`").collect()
    assert [r["operation"] for r in sorted(history, key=lambda r: r["version"])] == [
        "WRITE", "WRITE"]

    con = duckdb.connect()
    configure_gcs(con)
    con.execute("LOAD delta")
    for name, schema in (("candles", CANDLE_ARROW_SCHEMA), ("indicators", INDICATOR_ARROW_SCHEMA)):
        want = sorted_rows(delta_log.read_table(str(local / name)), schema).to_pandas()
        through_rs = sorted_rows(delta_log.read_table(f"{remote}/{name}"), schema).to_pandas()
        scanned = con.sql(f"SELECT * FROM delta_scan('{remote}/{name}')").arrow().read_all()
        through_duckdb = sorted_rows(scanned, schema).to_pandas()
        assert len(want) > 1_000
        pd.testing.assert_frame_equal(through_rs, want, check_exact=True)
        pd.testing.assert_frame_equal(through_duckdb, want, check_exact=True)

    from tests.integration.serving.offline_tables import local_repo

    entity = pd.DataFrame({"pair": ["XBT/USD"] * 3, "event_timestamp": pd.to_datetime(
        ["2018-05-09 06:00:30", "2018-05-09 12:34:00", "2018-05-09 23:59:59"], utc=True)})
    features = ["candles_1m:close", "candles_1m:volume", "indicators_1m:rsi_14",
                "candles_1h:close"]

    def served(root: str, repo: str) -> pd.DataFrame:
        store = local_repo(tmp_path / repo, root)  # type: ignore[arg-type]
        frame = store.get_historical_features(entity_df=entity, features=features,
                                              full_feature_names=True).to_df()
        return frame.sort_values("event_timestamp").reset_index(drop=True)

    from_gcs, from_disk = served(remote, "repo-gcs"), served(str(local), "repo-local")
    assert from_gcs["candles_1m__close"].notna().all()
    pd.testing.assert_frame_equal(from_gcs, from_disk, check_exact=True)


def test_a_version_another_writer_created_meanwhile_is_not_overwritten(
    spark: SparkSession, gcs_emulator: GcsEmulator
) -> None:
    """The race the former log mirror had (it checked the version file, then put it): through
    the GCS connector, a create-if-absent whose object appeared between its start and its
    upload fails with 412, and Delta's GCS log store refuses to write an existing version."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    table = f"gs://{gcs_emulator.bucket}/race-{uuid.uuid4().hex[:8]}"
    version_file = f"{table}/_delta_log/00000000000000000000.json"
    path = jvm.org.apache.hadoop.fs.Path(version_file)
    hadoop_fs = path.getFileSystem(conf)

    stream = hadoop_fs.create(path, False)  # absent now: this writer goes ahead
    stream.write(bytearray(b'{"commitInfo":{"mine":true}}\n'))
    other = filesystem_for(version_file)  # meanwhile another writer commits the same version
    other.pipe_file(version_file[len("gs://"):], b'{"commitInfo":{"theirs":true}}\n')
    with pytest.raises(Exception, match="412 Precondition Failed"):
        stream.close()
    assert other.cat_file(version_file[len("gs://"):]) == b'{"commitInfo":{"theirs":true}}\n'

    log_store = jvm.io.delta.storage.GCSLogStore(conf)
    lines = jvm.java.util.ArrayList()
    lines.add('{"commitInfo":{"third":true}}')
    with pytest.raises(Exception, match="FileAlreadyExistsException"):
        log_store.write(path, lines.iterator(), False, conf)
    assert other.cat_file(version_file[len("gs://"):]) == b'{"commitInfo":{"theirs":true}}\n'


def test_dataproc_code_is_staged_to_the_bucket(gcs_emulator: GcsEmulator, tmp_path: Path) -> None:
    """What an ephemeral run ships: both entry points, the code zip, Braid's wheel and the
    initialization action, where the requests point (`tests/unit/test_batch_dataproc.py`)."""
    import zipfile

    from batch.dataproc import init_action_script

    target = DataprocTarget("braid-test", "europe-west1", "c1", f"gs://{gcs_emulator.bucket}/jobs")
    code = stage_code(target, run_tag="t1", with_wheel=True)
    fs = filesystem_for(code.markets_entry)

    def bare(uri: str) -> str:
        return uri[len("gs://"):]

    root = Path(__file__).resolve().parents[2]
    assert code.prefix == f"gs://{gcs_emulator.bucket}/jobs/braid/t1"
    assert fs.cat(bare(code.markets_entry)) == (root / "batch" / "backfill_trades.py").read_bytes()
    assert fs.cat(bare(code.sensors_entry)) == (root / "batch" / "sensors_backfill.py").read_bytes()
    assert "batch/spark_conf.py" in zipfile.ZipFile(fs.open(bare(code.code_zip))).namelist()
    assert fs.cat(bare(code.init_action)).decode() == init_action_script()
    assert code.wheel_name.startswith("braid-") and code.wheel_name.endswith(".whl")
    fs.get_file(bare(code.wheel), str(tmp_path / code.wheel_name))
    wheel = zipfile.ZipFile(tmp_path / code.wheel_name).namelist()
    assert {"batch/dataproc.py", "features/candles.py", "cli/main.py"} <= set(wheel)

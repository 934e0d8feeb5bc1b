"""The offline store as delta-spark writes it, and the backfill reading a Kafka topic.

- A table the backfill wrote with delta-spark reads the same through delta-rs (`deltalake`),
  through DuckDB's delta extension (the Feast offline store's reader) and through Spark; a
  re-run of the range is one `replaceWhere` commit.
- A Kafka input: rejected records keep their topic, partition, offset and Kafka timestamp; a
  topic that does not exist, or a range with no record, fails the job before anything is
  written (the table keeps its version and rows).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import deltalake
import duckdb
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from batch.backfill import BackfillConfig, run_backfill
from batch.kafka_input import KafkaInput, KafkaInputError, KafkaPosition
from batch.spark_conf import LOCAL_FS_CLASS
from batch.spark_session import delta_spark_available, spark_session
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA
from streaming.settings import KafkaSettings

pytestmark = pytest.mark.integration

KEY = ["pair", "window_ms", "window_start_ms"]
START, END = date(2024, 1, 1), date(2024, 1, 3)


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    yield spark_session("braid-tests", master="local[2]", shuffle_partitions=4)


def trades(count: int, start_ms: int = 1_704_067_200_000) -> pa.Table:
    """Two pairs, one trade every 20 s from 2024-01-01T00:00Z."""
    rows = [{
        "pair": "XBT/USD" if i % 2 else "ETH/USD", "price": 100.0 + (i % 17) * 0.5,
        "volume": 0.1 + (i % 5) * 0.01, "side": "buy" if i % 3 else "sell",
        "order_type": "market", "trade_id": i + 1, "timestamp_ms": start_ms + i * 20_000,
    } for i in range(count)]
    from features.schemas.trade import TRADE_ARROW_SCHEMA

    return pa.Table.from_pylist(rows, schema=TRADE_ARROW_SCHEMA)


def backfill(spark: SparkSession, output: Path, **source: object) -> dict[str, int]:
    config = BackfillConfig(start=START, end=END, pairs=["XBT/USD", "ETH/USD"],
                            output=str(output), durations_ms=[60_000, 3_600_000],
                            show_progress=False, **source)  # type: ignore[arg-type]
    return run_backfill(spark, config).table_versions


def sorted_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    return table.select(schema.names).cast(schema).sort_by([(k, "ascending") for k in KEY])


def test_a_delta_spark_table_reads_the_same_through_delta_rs_duckdb_and_spark(
    spark: SparkSession, tmp_path: Path
) -> None:
    from serving.duckdb_delta import ensure_delta_extension

    assert delta_spark_available(spark), "delta-spark jars missing: python -m infra.jars spark"
    # local files go through the FileSystem that forks no `chmod` per file (spark_session)
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    local_fs = jvm.org.apache.hadoop.fs.FileSystem.get(
        jvm.java.net.URI("file:///"), spark.sparkContext._jsc.hadoopConfiguration())
    assert local_fs.getClass().getName() == LOCAL_FS_CLASS
    archive = tmp_path / "trades-0001.parquet"
    pq.write_table(trades(6_000), archive)
    output = tmp_path / "offline"
    assert backfill(spark, output, inputs=[str(archive)])["candles"] == 0
    assert backfill(spark, output, inputs=[str(archive)])["candles"] == 1

    ensure_delta_extension()
    for name, schema in (("candles", CANDLE_ARROW_SCHEMA), ("indicators", INDICATOR_ARROW_SCHEMA)):
        uri = str(output / name)
        table = deltalake.DeltaTable(uri)
        assert table.metadata().partition_columns == ["pair", "window_ms", "month"]
        through_rs = sorted_table(table.to_pyarrow_table(), schema)
        through_duckdb = sorted_table(
            duckdb.sql(f"SELECT * FROM delta_scan('{uri}')").fetch_arrow_table(), schema)
        through_spark = sorted_table(spark.read.format("delta").load(uri).toArrow(), schema)
        assert through_rs.num_rows > 100
        # value for value, NaN (indicator warm-up) in the same places
        pd.testing.assert_frame_equal(through_rs.to_pandas(), through_duckdb.to_pandas(),
                                      check_exact=True, obj=f"{name}: delta-rs vs DuckDB")
        pd.testing.assert_frame_equal(through_rs.to_pandas(), through_spark.to_pandas(),
                                      check_exact=True, obj=f"{name}: delta-rs vs Spark")
        # files carry Hadoop's usual permissions (0666 less its umask 022), set through
        # Java's file API instead of a `chmod` process
        data_file = next((output / name).rglob("*.parquet"))
        assert data_file.stat().st_mode & 0o777 == 0o644
        # the re-run is one commit that replaced the range's partitions (not an append)
        last = table.history(1)[0]
        assert last["operation"] == "WRITE"
        assert "pair" in last["operationParameters"]["predicate"]
        assert through_rs.num_rows == deltalake.DeltaTable(uri, version=0).to_pyarrow_table(
        ).num_rows


def produce(kafka: KafkaSettings, topic: str, values: list[bytes], partitions: int = 2) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)
    # idempotent: a retried send under load must not write a record twice (the offsets matter)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers,
                         "enable.idempotence": True})
    for value in values:
        record = json.loads(value) if value.startswith(b"{") else {}
        key = str(record.get("pair", "x"))
        producer.produce(topic, key=key, value=value,
                         partition=0 if key == "XBT/USD" else 1)
    assert producer.flush(30) == 0


def test_kafka_rejected_records_keep_their_partition_offset_and_kafka_timestamp(
    spark: SparkSession, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    topic = f"t{uuid.uuid4().hex[:10]}.trades"
    good = [orjson.dumps({"v": 1, **row}) for row in trades(400).to_pylist()]
    produce(kafka_settings, topic, [*good[:200], b"not json",
                                    orjson.dumps({**json.loads(good[3]), "price": -1.0}),
                                    *good[200:]])
    output = tmp_path / "offline"
    versions = backfill(spark, output, inputs=[],
                        kafka=KafkaInput(kafka_settings.bootstrap_servers, topic))
    assert versions == {"candles": 0, "indicators": 0, "rejected_trades": 0}
    rejected = deltalake.DeltaTable(str(output / "rejected_trades")).to_pyarrow_table()
    rows = sorted(rejected.to_pylist(), key=lambda r: r["reason"])
    assert [r["reason"] for r in rows] == [
        "price must be positive", "unparseable: the record's value is not a JSON object"]
    # each partition held 100 trades before its bad record
    assert [(r["source"].rsplit("/", 1)[-1], r["row_number"]) for r in rows] == [
        ("0", 100), ("1", 100)]
    for row in rows:
        assert row["source"] in (f"kafka:{topic}/0", f"kafka:{topic}/1")
        assert json.loads(row["raw"])["kafka_timestamp_ms"] > 1_700_000_000_000
    candles = deltalake.DeltaTable(str(output / "candles")).to_pyarrow_table()
    assert candles.num_rows > 0


def test_a_missing_topic_or_an_empty_range_fails_before_anything_is_written(
    spark: SparkSession, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    topic = f"t{uuid.uuid4().hex[:10]}.trades"
    produce(kafka_settings, topic, [orjson.dumps(r) for r in trades(300).to_pylist()])
    output = tmp_path / "offline"
    source = KafkaInput(kafka_settings.bootstrap_servers, topic)
    assert backfill(spark, output, inputs=[], kafka=source)["candles"] == 0
    rows = deltalake.DeltaTable(str(output / "candles")).to_pyarrow_table().num_rows

    with pytest.raises(KafkaInputError, match="does not exist"):
        backfill(spark, output, inputs=[],
                 kafka=KafkaInput(kafka_settings.bootstrap_servers, f"{topic}.missing"))
    future = KafkaPosition.parse("2999-01-01")
    with pytest.raises(KafkaInputError, match="no record in the range"):
        backfill(spark, output, inputs=[],
                 kafka=KafkaInput(kafka_settings.bootstrap_servers, topic, start=future))
    with pytest.raises(KafkaInputError, match="no record in the range"):
        backfill(spark, output, inputs=[], kafka=KafkaInput(
            kafka_settings.bootstrap_servers, topic, start=KafkaPosition.parse("2000-01-01"),
            end=KafkaPosition.parse("2000-01-02")))
    with pytest.raises(KafkaInputError, match="cannot start at `latest`"):
        backfill(spark, output, inputs=[], kafka=KafkaInput(
            kafka_settings.bootstrap_servers, topic, start=KafkaPosition.parse("latest")))
    table = deltalake.DeltaTable(str(output / "candles"))
    assert table.version() == 0 and table.to_pyarrow_table().num_rows == rows

"""`braid batch ...` and `spark-submit batch/backfill_trades.py` argument handling (no Spark)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import pytest
import structlog
from typer.testing import CliRunner

from batch.arrival_order import ArrivalOrder
from batch.backfill_trades import build_parser, config_from_args
from cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _keep_logging_config() -> Iterator[None]:
    """`braid` configures structlog to print to the stderr CliRunner swaps in and then closes:
    restore the previous configuration so later tests do not log into a closed file."""
    config = structlog.get_config()
    yield
    structlog.configure(**config)


@pytest.mark.parametrize("command", ["backfill", "submit-dataproc"])
def test_batch_commands_have_help(command: str) -> None:
    result = runner.invoke(app, ["batch", command, "--help"])
    assert result.exit_code == 0
    assert "--start" in result.output and "--output" in result.output


def test_submit_dataproc_dry_run_prints_the_request() -> None:
    result = runner.invoke(app, [
        "batch", "submit-dataproc", "--project", "p1", "--region", "europe-west1",
        "--cluster", "c1", "--staging", "gs://b/jobs", "-i", "gs://b/trades/*.csv",
        "--start", "2018-05-08", "--end", "2018-05-10", "-p", "XBT/USD", "-p", "ETH/USD",
        "--output", "gs://b/offline", "-d", "1m", "-d", "1h", "--dry-run",
    ])
    assert result.exit_code == 0, result.output
    request = json.loads(result.output)
    job = request["job"]["pysparkJob"]
    assert request["region"] == "europe-west1"
    assert job["args"][:2] == ["--input", "gs://b/trades/*.csv"]
    assert "XBT/USD" in job["args"] and "1h" in job["args"]
    assert job["properties"]["spark.jars.packages"].startswith("io.delta:delta-spark_4.2_2.13:")


def test_kafka_arguments_become_a_kafka_input_read_in_offset_order() -> None:
    from batch.kafka_input import KafkaPosition

    args = build_parser().parse_args([
        "--kafka-bootstrap", "127.0.0.1:9092", "--kafka-topic", "trades",
        "--kafka-start", "2018-05-08", "--kafka-end", '{"0": 120, "1": 7}',
        "--start", "2018-05-08", "--end", "2018-05-10", "--pairs", "XBT/USD",
        "--output", "o",
    ])
    config = config_from_args(args)
    assert config.inputs == [] and config.kafka is not None
    assert config.arrival is ArrivalOrder.FILE
    assert config.kafka.start == KafkaPosition("timestamp", timestamp_ms=1525737600000)
    assert config.kafka.end.spark_options("trades", [0, 1], start=False) == {
        "endingOffsets": '{"trades": {"0": 120, "1": 7}}'}
    assert KafkaPosition.parse("5").spark_options("t", [0, 1], start=True) == {
        "startingOffsets": '{"t": {"0": 5, "1": 5}}'}
    assert KafkaPosition.parse("ms:1000").spark_options("t", [0], start=False) == {
        "endingTimestamp": "1000"}


def test_files_and_a_kafka_topic_are_one_or_the_other() -> None:
    common = ["--start", "2018-05-08", "--end", "2018-05-10", "--pairs", "XBT/USD",
              "--output", "o"]
    with pytest.raises(SystemExit):
        config_from_args(build_parser().parse_args(common))
    with pytest.raises(SystemExit):
        config_from_args(build_parser().parse_args(
            ["--input", "a.csv", "--kafka-bootstrap", "b:1", "--kafka-topic", "t", *common]))


def test_braid_batch_backfill_help_documents_the_kafka_options() -> None:
    result = runner.invoke(app, ["batch", "backfill", "--help"])
    assert result.exit_code == 0
    for option in ("--kafka-bootstrap", "--kafka-topic", "--kafka-start", "--kafka-end"):
        assert option in result.output


def test_spark_submit_arguments_become_a_backfill_config() -> None:
    args = build_parser().parse_args([
        "--input", "a.csv", "b.csv", "--start", "2018-05-08", "--end", "2018-05-10",
        "--pairs", "XBT/USD,ETH/USD", "--output", "var/offline", "--durations", "1m", "1h",
        "--grace", "10s", "--arrival-order", "file", "--file-reader", "hadoop",
    ])
    config = config_from_args(args)
    assert config.inputs == ["a.csv", "b.csv"]
    assert (config.start, config.end) == (date(2018, 5, 8), date(2018, 5, 10))
    assert config.pairs == ["XBT/USD", "ETH/USD"]
    assert config.durations_ms == [60_000, 3_600_000]
    assert config.grace_ms == 10_000
    assert config.arrival is ArrivalOrder.FILE
    assert config.file_reader == "hadoop"
    assert config.days == ["2018-05-08", "2018-05-09"]


def test_an_empty_or_reversed_range_is_refused() -> None:
    args = build_parser().parse_args([
        "--input", "a.csv", "--start", "2018-05-10", "--end", "2018-05-10", "--pairs", "XBT/USD",
        "--output", "o",
    ])
    with pytest.raises(ValueError, match="after start"):
        config_from_args(args)

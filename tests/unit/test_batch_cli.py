"""`braid batch ...` and `spark-submit batch/backfill_trades.py` argument handling (no Spark)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import pytest
import structlog
from typer.testing import CliRunner

from batch.arrival_order import ArrivalOrder
from batch.backfill_trades import build_parser, config_from_args, job_args, parse_config
from batch.table_retention import TableRetention
from cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _keep_logging_config() -> Iterator[None]:
    """`braid` configures structlog to print to the stderr CliRunner swaps in and then closes:
    restore the previous configuration so later tests do not log into a closed file."""
    config = structlog.get_config()
    yield
    structlog.configure(**config)


def test_braid_batch_backfill_help_is_the_jobs_own() -> None:
    result = runner.invoke(app, ["batch", "backfill", "--help"])
    assert result.exit_code == 0
    assert result.output == build_parser("braid batch backfill").format_help()
    assert "--start" in result.output and "--output" in result.output


@pytest.mark.parametrize("command", ["submit-dataproc", "dataproc"])
def test_dataproc_commands_have_help(command: str) -> None:
    result = runner.invoke(app, ["batch", command, "--help"])
    assert result.exit_code == 0
    assert "--project" in result.output and "--staging" in result.output


def test_braid_and_spark_submit_take_the_same_options_and_names() -> None:
    """`-p A -p B` (braid's former spelling) and `--pairs A B` (spark-submit's) are one option;
    so are `-d`/`--durations` and `-i`/`--input`; `job_args` builds what the parser reads."""
    common = ["--start", "2018-05-08", "--end", "2018-05-10", "--output", "o"]
    short = config_from_args(build_parser().parse_args(
        ["-i", "a.csv", "-i", "b.csv", "-p", "XBT/USD", "-p", "ETH/USD", "-d", "1m", "-d", "1h",
         *common]))
    long = config_from_args(build_parser().parse_args(
        ["--input", "a.csv", "b.csv", "--pairs", "XBT/USD", "ETH/USD", "--durations", "1m", "1h",
         *common]))
    built = parse_config(job_args(inputs=["a.csv", "b.csv"], start=date(2018, 5, 8),
                                  end=date(2018, 5, 10), pairs=["XBT/USD", "ETH/USD"],
                                  output="o", durations=["1m", "1h"]))
    assert short == long == built
    assert short.pairs == ["XBT/USD", "ETH/USD"] and short.durations_ms == [60_000, 3_600_000]


@pytest.mark.parametrize(("bad", "names"), [
    (["--start", "2018-13-01"], "--start"),
    (["--end", "2018-05-07"], "must be after start"),
    (["-d", "7x"], "not a duration: '7x'"),
])
def test_bad_input_is_one_line_and_exit_code_2(
        bad: list[str], names: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = {"--start": "2018-05-08", "--end": "2018-05-10"}
    for flag, value in zip(bad[::2], bad[1::2], strict=True):
        args[flag] = value
    argv = ["-i", "a.csv", "-p", "XBT/USD", "--output", "o",
            *(item for pair in args.items() for item in pair)]
    result = runner.invoke(app, ["batch", "backfill", *argv])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("braid batch backfill: error: ")
    assert names in lines[0]


def test_submit_dataproc_dry_run_prints_the_request() -> None:
    result = runner.invoke(app, [
        "batch", "submit-dataproc", "--project", "p1", "--region", "europe-west1",
        "--cluster", "c1", "--staging", "gs://b/jobs", "--dry-run", "--",
        "-i", "gs://b/trades/*.csv", "--start", "2018-05-08", "--end", "2018-05-10",
        "-p", "XBT/USD", "-p", "ETH/USD", "--output", "gs://b/offline", "-d", "1m", "-d", "1h",
    ])
    assert result.exit_code == 0, result.output
    request = json.loads(result.output)
    job = request["job"]["pysparkJob"]
    assert request["region"] == "europe-west1"
    assert job["args"][:-5] == ["-i", "gs://b/trades/*.csv", "--start", "2018-05-08", "--end",
                                "2018-05-10", "-p", "XBT/USD", "-p", "ETH/USD", "--output",
                                "gs://b/offline", "-d", "1m", "-d", "1h"]
    assert job["args"][-5:-1] == TableRetention.from_env().job_args()
    assert job["args"][-1] == "--no-progress"
    assert job["properties"]["spark.jars.packages"].startswith("io.delta:delta-spark_4.2_2.13:")


def test_dataproc_dry_run_prints_the_cluster_both_jobs_and_the_deletion(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # what the options leave out comes from BRAID_DATAPROC_* (or .env)
    monkeypatch.setenv("BRAID_DATAPROC_WORKER_MACHINE_TYPE", "n2-highmem-8")
    result = runner.invoke(app, [
        "batch", "dataproc", "--project", "p1", "--region", "europe-west1",
        "--staging", "gs://b/jobs", "--sensors-archive", "gs://b/archive", "--dry-run", "--",
        "--input", "gs://b/trades/*.csv", "--start", "2018-05-08", "--end", "2018-05-10",
        "--pairs", "XBT/USD", "--output", "gs://b/offline",
    ])
    assert result.exit_code == 0, result.output
    decoder, text, requests = json.JSONDecoder(), result.output.strip(), []
    while text:
        value, end = decoder.raw_decode(text)
        requests.append(value)
        text = text[end:].strip()
    create, markets, sensors, delete = requests
    assert create["cluster"]["config"]["softwareConfig"]["imageVersion"] == "3.0-debian12"
    assert create["cluster"]["config"]["workerConfig"]["machineTypeUri"] == "n2-highmem-8"
    assert markets["job"]["pysparkJob"]["mainPythonFileUri"].endswith("/backfill_trades.py")
    assert sensors["job"]["pysparkJob"]["args"] == [
        "--input", "gs://b/archive", "--output", "gs://b/offline/sensor_features",
        "--start", "2018-05-08", "--end", "2018-05-10"]
    assert delete["clusterName"] == create["cluster"]["clusterName"]


def test_dataproc_commands_refuse_bad_job_arguments_before_any_call() -> None:
    result = runner.invoke(app, [
        "batch", "dataproc", "--project", "p1", "--staging", "gs://b/jobs", "--",
        "--input", "x", "--start", "2018-05-08", "--end", "2018-05-01", "--pairs", "XBT/USD",
        "--output", "gs://b/o"])
    assert result.exit_code == 2
    assert "must be after start" in result.output


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
    with pytest.raises(ValueError, match="give --input files or --kafka-bootstrap"):
        config_from_args(build_parser().parse_args(common))
    with pytest.raises(ValueError, match="not both"):
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

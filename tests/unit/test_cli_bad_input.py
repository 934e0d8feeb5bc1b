"""Every `braid` command answers bad input (a date, a range, a duration, a pair, a path, a number
out of range) with one line naming it and exit code 2, before it starts anything: no traceback,
no usage box. The commands run in this process through `cli.main.app`, as the `braid` script and
`python -m cli.main` run them; Kafka points at a closed port, so a command that got past its
checks would fail (differently) rather than reach a real broker.

`braid batch ...` hand their job arguments to the backfill's own parser
(`batch/backfill_trades.py`), whose one-line errors name the value (and the option where
argparse does). Not covered there yet: a pair's format, and a local `--input` that does not
exist (it fails inside Spark).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from cli.main import app

DATAPROC = ["batch", "submit-dataproc", "--project", "p", "--region", "r", "--cluster", "c",
            "--staging", "gs://b/jobs", "--"]
JOB = ["--input", "gs://b/t.csv", "--output", "gs://b/offline", "--pairs", "XBT/USD"]
MISSING = "/no/such/place"
LOCAL_JOB = ["--output", "var/o", "--pairs", "XBT/USD", "--start", "2018-05-08", "--end",
             "2018-05-09"]

# (arguments, what the one line must name)
CASES: list[tuple[list[str], str]] = [
    (["up", "--services", "broker,nope"], "nope"),
    (["up", "--state-dir", "{file}"], "--state-dir"),
    (["status", "--state-dir", "{file}"], "--state-dir"),
    (["down", "--state-dir", "{file}"], "--state-dir"),
    (["demo", "--days", "0"], "--days"),
    (["demo", "--idle-timeout", "3x"], "--idle-timeout"),
    (["demo", "--pairs", "99"], "--pairs"),
    (["trades", "publish", "-s", "synthetic", "-p", "xbtusd"], "--pair"),
    (["trades", "publish", "-s", "nowhere"], "--source"),
    (["trades", "publish", "-s", "file", "-f", f"{MISSING}.csv"], "--file"),
    (["trades", "publish", "-s", "kraken-rest", "-p", "XBT/USD", "--since", "2018-13-01"],
     "--since"),
    (["trades", "publish", "-s", "kraken-rest", "-p", "XBT/USD", "--since", "2018-05-09",
      "--until", "2018-05-08"], "--since"),
    (["trades", "publish", "-s", "synthetic", "--count", "0"], "--count"),
    (["trades", "publish", "-s", "kraken-rest", "-p", "XBT/USD", "--since", "2018-05-09",
      "--state-file", "{file}", "--count", "10", "--close-windows-at-end"],
     "--close-windows-at-end"),
    (["markets", "candles", "-d", "7x"], "--duration"),
    (["markets", "candles", "--grace", "soon"], "--grace"),
    (["markets", "candles", "--idle-timeout", "0s"], "--idle-timeout"),
    (["markets", "candles", "--max-event-time-skew", "1y"], "--max-event-time-skew"),
    (["markets", "indicators", "--grace", "5s"], "--grace"),
    (["markets", "predictor", "--feature-wait", "2x"], "--feature-wait"),
    (["markets", "predictor", "--repo", MISSING], "--repo"),
    (["batch", "backfill", *JOB, "--start", "2018-13-01", "--end", "2018-05-09"], "--start"),
    (["batch", "backfill", *JOB, "--start", "2018-05-09", "--end", "2018-05-08"],
     "end 2018-05-08 must be after start 2018-05-09"),
    (["batch", "backfill", *JOB, "--start", "2018-05-08", "--end", "2018-05-09",
      "--durations", "1x"], "'1x'"),
    (["batch", "backfill", *JOB, "--start", "2018-05-08", "--end", "2018-05-09",
      "--grace", "soon"], "'soon'"),
    (["batch", "backfill", "--input", f"{MISSING}/XBTUSD.csv", *LOCAL_JOB],
     f"--input {MISSING}/XBTUSD.csv"),
    (["batch", "backfill", "--input", "{dir}/*.csv", *LOCAL_JOB], "*.csv: no such file"),
    (["batch", "backfill", *LOCAL_JOB], "give --input files or --kafka-bootstrap and"),
    ([*DATAPROC, *JOB, "--start", "2018-13-01", "--end", "2018-05-09"], "--start"),
    ([*DATAPROC, *JOB, "--start", "2018-05-09", "--end", "2018-05-08"],
     "end 2018-05-08 must be after start 2018-05-09"),
    ([*DATAPROC, *JOB, "--start", "2018-05-08", "--end", "2018-05-09", "--durations", "1x"],
     "'1x'"),
    (["batch", "dataproc", "--project", "p", "--staging", "gs://b", "--", *JOB, "--start",
      "2018-05-08", "--end", "2018-05-07"], "end 2018-05-07 must be after start 2018-05-08"),
    (["sensors", "simulate", "--clients", "0"], "--clients"),
    (["sensors", "simulate", "--disorder", "2x"], "--disorder"),
    (["sensors", "simulate", "--output", f"{MISSING}/events.parquet"], "--output"),
    (["sensors", "replay-skab", "--data-dir", MISSING], "--data-dir"),
    (["sensors", "windows", "--grace", "later"], "--grace"),
    (["sensors", "windows", "--edges", f"{MISSING}.json"], "--edges"),
    (["sensors", "join", "--threshold", "1.5"], "--threshold"),
    (["sensors", "join", "--model", f"{MISSING}.json"], "--model"),
    (["sensors", "join", "--model", "builtin", "--model-uri", "models:/m@champion"],
     "--model"),
    (["sensors", "join", "--max-event-time-skew", "an hour"], "--max-event-time-skew"),
    (["sensors", "archive", "--root", "var/archive", "--max-rows", "0"], "--max-rows"),
    (["sensors", "backfill", "--input", MISSING, "--output", "var/o"], "--input"),
    (["sensors", "backfill", "--input", "{dir}", "--output", "var/o", "--start", "2018-5-9"],
     "--start"),
    (["sensors", "backfill", "--input", "{dir}", "--output", "var/o", "--start", "2018-05-09",
      "--end", "2018-05-08"], "--start"),
    (["sensors", "train-baseline", "--output", f"{MISSING}/model.json"], "--output"),
    (["sensors", "train-baseline", "--minutes", "0"], "--minutes"),
    (["train", "markets", "--start", "2018-13-01", "--end", "2018-05-09", "--pairs", "XBT/USD"],
     "--start"),
    (["train", "markets", "--start", "2018-05-09", "--end", "2018-05-08", "--pairs", "XBT/USD"],
     "--start"),
    (["train", "markets", "--start", "2018-05-08", "--end", "2018-05-09", "--pairs", "xbt/usd"],
     "--pairs"),
    (["train", "markets", "--start", "2018-05-08", "--end", "2018-05-09", "--pairs", ","],
     "--pairs"),
    (["train", "sensors", "--source", "nowhere"], "--source"),
    (["train", "sensors", "--skab-dir", MISSING], "--skab-dir"),
    (["train", "sensors", "--clients", "0"], "--clients"),
    (["train", "models", "--since", "2018-05-08"], "--since"),
    (["train", "reproduce", "--model", "braid-markets-direction/x"],
     "'braid-markets-direction/x'"),
    (["online-sink", "--pipeline", "weather"], "--pipeline"),
    (["online-sink", "--repo", MISSING], "--repo"),
    (["online-sink", "--profile", "nope"], "nope"),
    (["consistency", "--from", "2018-13-01", "--to", "2018-05-09"], "--from"),
    (["consistency", "--from", "2018-05-09", "--to", "2018-05-08"], "--from"),
    (["consistency", "--from", "2018-05-08", "--to", "2018-05-09", "--json",
      f"{MISSING}/r.json"], "--json"),
    (["consistency", "--from", "2018-05-08", "--to", "2018-05-09", "--pipeline", "weather"],
     "--pipeline"),
    (["consistency", "--from", "2018-05-08", "--to", "2018-05-09", "--threshold", "2"],
     "--threshold"),
    (["topics", "create", "--partitions", "0"], "--partitions"),
    (["flows", "serve", "--deployment", "backfill/daily"], "--deployment"),
    (["api", "--port", "70000"], "--port"),
    (["api", "--repo", MISSING], "--repo"),
    (["api", "--profile", "nope"], "nope"),
]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A closed Kafka port, no MLflow, and structlog restored afterwards (the root callback
    configures it to print to the stderr capsys swaps in)."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("BRAID_STACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    config = structlog.get_config()
    yield
    structlog.configure(**config)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exited:
        app(args=args)
    out = capsys.readouterr()
    lines = [line for line in (out.err + out.out).splitlines() if line.strip()]
    return int(exited.value.code or 0), lines


@pytest.mark.parametrize(("args", "named"), CASES, ids=[" ".join(a[:4]) for a, _ in CASES])
def test_bad_input_is_one_line_naming_it_and_exit_code_2(
        args: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    args = [a.format(file=a_file, dir=a_dir) for a in args]
    code, lines = _run(args, capsys)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    assert named in lines[0], lines[0]


def test_every_command_is_driven_with_bad_input() -> None:
    from typer.core import TyperGroup
    from typer.main import get_command

    def leaves(command: object, path: tuple[str, ...]) -> set[tuple[str, ...]]:
        if isinstance(command, TyperGroup):
            return set().union(*(leaves(c, (*path, n)) for n, c in command.commands.items()))
        return {path}

    driven = {tuple(a for a in args[:3] if not a.startswith("-"))[:len(p)]
              for args, _ in CASES for p in [args]}
    commands = leaves(get_command(app), ())
    assert {c for c in commands if not any(d[:len(c)] == c for d in driven)} == set()


def test_a_bad_setting_from_the_environment_is_one_line_naming_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BRAID_TOPIC_MARKET_PARTITIONS", "eight")
    code, lines = _run(["topics", "create"], capsys)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("braid topics create: market_partitions: ")


def test_the_line_names_the_command_and_points_at_its_help(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(["markets", "candles", "-d", "7x"], capsys)
    assert code == 2
    assert lines == ["braid markets candles: Invalid value for '--duration' / '-d': '7x' is not a "
                     "duration (e.g. 500ms, 5s, 1m, 1h, 1d) (see 'braid markets candles --help')"]


def test_good_durations_pass_including_a_zero_grace(capsys: pytest.CaptureFixture[str]) -> None:
    from cli import inputs

    assert inputs.duration_or_zero_ms("0s") == 0
    assert inputs.duration_or_zero_ms("250ms") == 250
    assert inputs.durations(["1m", "1h", "90s"]) == ["1m", "1h", "90s"]
    assert inputs.pairs(["XBT/USD", "USDT/USD"]) == ["XBT/USD", "USDT/USD"]

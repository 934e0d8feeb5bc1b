"""The consistency report: 100% when the sink served the batch layer's rows, and it finds
exactly one value corrupted on purpose."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import structlog
from typer.testing import CliRunner

from cli.main import app
from features.indicators import INDICATOR_COLUMNS
from serving.consistency import consistency_report, written_rows
from streaming.runtime.clients import make_producer
from streaming.runtime.records import InputBatch
from streaming.settings import KafkaSettings, TopicSettings
from streaming.sinks.online_store import OnlineSinkOperator, OnlineWriter
from streaming.topics import ONLINE_WRITES, TopicSpec, ensure_topics
from tests.integration.serving.offline_tables import local_repo

pytestmark = pytest.mark.integration

START, END = datetime(2018, 1, 1, tzinfo=UTC), datetime(2019, 1, 1, tzinfo=UTC)


def _sink_all(store: object, table: pa.Table, topic: str, kind: str, pairs: list[str]) -> None:
    rows = table.filter(pc.is_in(table["pair"], pa.array(pairs))).to_pylist()
    values = [orjson.dumps(r) for r in rows]  # orjson writes NaN as null
    operator = OnlineSinkOperator(OnlineWriter(store), {topic: kind})  # type: ignore[arg-type]
    emission = operator.process(InputBatch(topic, 0, np.arange(len(values)), [None] * len(values),
                                           list(values)), 0)
    assert emission.dead_letters == []


def test_served_rows_match_the_offline_rows_and_one_corrupted_value_is_found(
        tmp_path: Path, offline_root: Path, market_tables: tuple[pa.Table, pa.Table]) -> None:
    store = local_repo(tmp_path / "repo", offline_root)
    candles, indicators = market_tables
    _sink_all(store, candles, "candles", "candles", ["XBT/USD", "ETH/USD"])
    _sink_all(store, indicators, "technical_indicators", "indicators", ["XBT/USD"])
    report = consistency_report(store, START, END, "markets")
    views = {v.view: v for v in report.views}
    assert views["candles_1m"].compared == 2 and views["candles_1h"].compared == 2
    assert views["indicators_1m"].compared == 1 and views["indicators_1h"].compared == 1
    assert views["indicators_1m"].missing == 1  # ETH/USD was never served
    assert views["indicators_1m"].missing_examples[0]["entity"] == "ETH/USD"
    assert all(f.match_rate == 1.0 for f in report.features)
    assert {f.feature for f in report.features if f.view == "indicators_1m"} >= set(
        INDICATOR_COLUMNS)

    # corrupt one served value: the latest XBT/USD 1m RSI, same event time
    minute = indicators.filter(pc.and_(pc.equal(indicators["pair"], "XBT/USD"),
                                       pc.equal(indicators["window_ms"], 60_000)))
    last = minute.slice(minute.num_rows - 1).to_pylist()[0]
    frame = pd.DataFrame([{**{k: v for k, v in last.items() if k != "window_ms"},
                           "rsi_14": last["rsi_14"] + 0.5}])
    frame["event_timestamp"] = pd.to_datetime(frame["window_end_ms"], unit="ms", utc=True)
    store.write_to_online_store("indicators_1m", frame)
    report = consistency_report(store, START, END, "markets")
    wrong = [f for f in report.features if f.match_rate < 1.0]
    assert [(f.view, f.feature, f.compared - f.matched) for f in wrong] == [
        ("indicators_1m", "rsi_14", 1)]
    assert wrong[0].max_abs_diff == pytest.approx(0.5, abs=1e-9)
    assert wrong[0].examples[0]["offline"] == last["rsi_14"]

    repo = tmp_path / "repo"
    logging_config = structlog.get_config()  # the CLI binds logging to the runner's stream
    try:
        result = CliRunner().invoke(app, [
            "consistency", "--from", "2018-01-01", "--to", "2019-01-01", "--repo", str(repo),
            "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")])
    finally:
        structlog.configure(**logging_config)
    assert result.exit_code == 1, result.output
    assert "rsi_14" in result.output
    data = json.loads((tmp_path / "r.json").read_text())
    rsi = next(f for f in data["features"] if f["view"] == "indicators_1m"
               and f["feature"] == "rsi_14")
    assert rsi["compared"] - rsi["matched"] == 1
    assert "<svg" in (tmp_path / "r.html").read_text()


def test_history_judges_every_row_the_sink_wrote_and_finds_one_corrupted_past_value(
        tmp_path: Path, offline_root: Path, market_tables: tuple[pa.Table, pa.Table],
        kafka_settings: KafkaSettings) -> None:
    """The sink's write log (online_writes) holds every row it wrote, not only the latest per
    pair; `--history` compares each with the batch layer's row at the same event time."""
    store = local_repo(tmp_path / "repo", offline_root)
    candles, indicators = market_tables
    operator = OnlineSinkOperator(OnlineWriter(store), {"candles": "candles",
                                                        "technical_indicators": "indicators"},
                                  log_topic="online_writes")
    logged: list[bytes] = []
    fed = 0
    for topic, table in (("candles", candles), ("technical_indicators", indicators)):
        hours = table.filter(pc.equal(table["window_ms"], 3_600_000))
        rows = hours.to_pylist()
        for pair in ("XBT/USD", "ETH/USD"):  # and each pair's last hour of minutes
            minutes = table.filter(pc.and_(pc.equal(table["window_ms"], 60_000),
                                           pc.equal(table["pair"], pair)))
            rows += minutes.slice(minutes.num_rows - 60).to_pylist()
        by_end: dict[int, list[dict]] = {}
        for r in rows:
            by_end.setdefault(r["window_end_ms"], []).append(r)
        for end in sorted(by_end):  # a batch per event time: each row reaches the store
            values: list[bytes | None] = [orjson.dumps(r) for r in by_end[end]]
            emission = operator.process(InputBatch(topic, 0, np.arange(len(values)),
                                                   [None] * len(values), values), 0)
            assert emission.dead_letters == []
            logged += [r.value for r in emission.records]
        fed += len(rows)
    assert len(logged) == fed  # a batch's rows are of distinct (view, pair): all written
    written = written_rows(logged)
    report = consistency_report(store, START, END, "markets", written)
    views = {v.view: v for v in report.views}
    for view, rows_logged in written.items():
        assert views[view].compared == len(rows_logged) > 2, view  # not just the latest two
        assert (views[view].missing, views[view].extra) == (0, 0), view
    assert all(f.match_rate == 1.0 for f in report.features)
    latest_only = {v.view: v.compared for v in consistency_report(store, START, END).views}
    assert latest_only["indicators_1h"] == 2

    # one value written in the past (since overwritten in the store) differs from the batch
    past = sorted(written["indicators_1h"])[10]
    corrupted = {view: {key: dict(values) for key, values in rows.items()}
                 for view, rows in written.items()}
    corrupted["indicators_1h"][past]["macd"] = (corrupted["indicators_1h"][past]["macd"]
                                                or 0.0) + 1.0
    report = consistency_report(store, START, END, "markets", corrupted)
    wrong = [f for f in report.features if f.match_rate < 1.0]
    assert [(f.view, f.feature, f.compared - f.matched) for f in wrong] == [
        ("indicators_1h", "macd", 1)]
    assert (wrong[0].examples[0]["entity"], wrong[0].examples[0]["event_ms"]) == past

    # the CLI reads the log from the broker
    prefix = f"hist{uuid.uuid4().hex[:8]}."
    ensure_topics(kafka_settings, [TopicSpec(prefix + ONLINE_WRITES, 2)], TopicSettings())
    producer = make_producer(kafka_settings)
    for value in logged:
        producer.produce(prefix + ONLINE_WRITES, value=value)
    assert producer.flush(30) == 0
    logging_config = structlog.get_config()
    try:
        result = CliRunner().invoke(app, [
            "consistency", "--from", "2018-01-01", "--to", "2019-01-01", "--repo",
            str(tmp_path / "repo"), "--history", "--topic-prefix", prefix,
            "--json", str(tmp_path / "h.json")],
            env={"KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers})
        missing = CliRunner().invoke(app, [
            "consistency", "--from", "2018-01-01", "--to", "2019-01-01", "--repo",
            str(tmp_path / "repo"), "--history", "--topic-prefix", "nolog."],
            env={"KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers})
    finally:
        structlog.configure(**logging_config)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "h.json").read_text())
    assert {v["view"]: v["compared"] for v in data["views"]} == {
        view: len(rows) for view, rows in written.items()}
    assert missing.exit_code == 2
    assert "no write log" in missing.output

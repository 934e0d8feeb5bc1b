"""The online sink on the streaming runtime: a real broker, its own consumer group."""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cli.online_sink import sink_kinds
from features.indicators import INDICATOR_COLUMNS
from serving.consistency import consistency_report, written_rows
from streaming.partitioning import partition_for
from streaming.runtime.clients import make_producer
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.sinks.online_store import online_sink_processor
from streaming.topics import CHECKPOINTS, DEAD_LETTER, ONLINE_WRITES, catalogue, ensure_topics
from tests.integration.serving.offline_tables import local_repo
from tests.support.processes import BraidProcess

pytestmark = pytest.mark.integration

PREFIX = "sinktest."
PARTITIONS = 4
START, END = datetime(2018, 1, 1, tzinfo=UTC), datetime(2019, 1, 1, tzinfo=UTC)


def test_sink_processor_writes_the_newest_rows_and_dead_letters_bad_ones(
        tmp_path: Path, offline_root: Path, market_tables: tuple[pa.Table, pa.Table],
        kafka_settings: KafkaSettings) -> None:
    kinds = sink_kinds(["markets"], PREFIX)
    specs = [replace(s, name=PREFIX + s.name,
                     partitions=PARTITIONS if PREFIX + s.name in kinds else s.partitions)
             for s in catalogue() if PREFIX + s.name in kinds
             or s.name in (DEAD_LETTER, CHECKPOINTS)]
    ensure_topics(kafka_settings, specs, TopicSettings())
    indicators = market_tables[1]
    minute = indicators.filter(pc.equal(indicators["window_ms"], 60_000))
    producer = make_producer(kafka_settings)
    topic = PREFIX + "technical_indicators"
    rows = minute.to_pylist()
    for row in rows:
        producer.produce(topic, key=row["pair"], value=orjson.dumps(row),  # NaN -> null
                         partition=partition_for(row["pair"], PARTITIONS))
        producer.poll(0)
    producer.produce(topic, key="XBT/USD", value=b"not json",
                     partition=partition_for("XBT/USD", PARTITIONS))
    assert producer.flush(30) == 0
    store = local_repo(tmp_path / "repo", offline_root)
    online_sink_processor(kafka_settings, store, kinds, group=PREFIX + "online-sink",
                          dead_letter_topic=PREFIX + DEAD_LETTER,
                          checkpoint_topic=PREFIX + CHECKPOINTS).run(
        max_idle_s=3, install_signals=False)
    for pair in ("XBT/USD", "ETH/USD"):
        last = [r for r in rows if r["pair"] == pair][-1]
        online = store.get_online_features(
            features=[f"indicators_1m:{c}" for c in ("window_start_ms", *INDICATOR_COLUMNS)],
            entity_rows=[{"pair": pair}]).to_dict()
        assert online["window_start_ms"] == [last["window_start_ms"]]
        for column in INDICATOR_COLUMNS:
            assert online[column][0] == pytest.approx(last[column], abs=1e-9, nan_ok=True)
    letters = [orjson.loads(v) for _, _, _, v in read_topic(kafka_settings, PREFIX + DEAD_LETTER)
               if v is not None]
    assert len(letters) == 1
    assert "decode: not JSON" in str(letters[0])


def test_sink_process_killed_mid_stream_ends_as_an_uninterrupted_run(
        tmp_path: Path, offline_root: Path, market_tables: tuple[pa.Table, pa.Table],
        kafka_settings: KafkaSettings) -> None:
    """`braid online-sink` as a process, kill -9 twice and SIGTERM once while rows flow, each
    time started again: the online store ends holding every pair's last candle and indicator
    row, nothing is dead-lettered, and every row in its write log (replays included) carries
    the values the topic carried for that row, so the consistency report over the log is 100%."""
    prefix = f"sinkkill{uuid.uuid4().hex[:8]}."
    kinds = sink_kinds(["markets"], prefix)
    topic_settings = TopicSettings(market_partitions=PARTITIONS)
    specs = [replace(s, name=prefix + s.name) for s in catalogue(topic_settings)
             if prefix + s.name in kinds or s.name in (DEAD_LETTER, CHECKPOINTS, ONLINE_WRITES)]
    ensure_topics(kafka_settings, specs, topic_settings)
    store = local_repo(tmp_path / "repo", offline_root)  # applied before the sink reads it
    candles, indicators = market_tables
    sources = {}
    for topic, table in ((prefix + "candles", candles),
                         (prefix + "technical_indicators", indicators)):
        minute = table.filter(pc.equal(table["window_ms"], 60_000))
        sources[topic] = sorted(minute.to_pylist(), key=lambda r: (r["window_end_ms"], r["pair"]))

    def produce() -> None:
        producer = make_producer(kafka_settings)
        chunks = 40
        for topic, rows in sources.items():
            size = -(-len(rows) // chunks)
            for i in range(chunks):
                for row in rows[i * size:(i + 1) * size]:
                    producer.produce(topic, key=row["pair"], value=orjson.dumps(row),
                                     partition=partition_for(row["pair"], PARTITIONS))
                producer.poll(0)
                time.sleep(0.2)
        assert producer.flush(30) == 0

    sink = BraidProcess(["online-sink", "--pipeline", "markets", "--repo", str(tmp_path / "repo"),
                         "--topic-prefix", prefix, "--group", prefix + "sink",
                         "--batch-size", "40"], kafka_settings, tmp_path / "sink.log",
                        {"BRAID_TOPIC_MARKET_PARTITIONS": str(PARTITIONS)}).start()
    feeder = threading.Thread(target=produce)
    last = {view: {r["pair"]: r for r in rows} for view, rows in
            (("candles_1m", sources[prefix + "candles"]),
             ("indicators_1m", sources[prefix + "technical_indicators"]))}
    try:
        sink.wait_for_log('"event": "assigned"', 1)
        feeder.start()
        for hard in (True, False, True):
            time.sleep(3)
            if hard:
                sink.kill9()
            else:
                assert sink.terminate() == 0
            sink.start()
            sink.wait_for_log('"event": "assigned"', sink.starts)
        feeder.join()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _online_starts(store) != {
                (view, pair): row["window_start_ms"] for view, rows in last.items()
                for pair, row in rows.items()}:
            time.sleep(1)
        time.sleep(2)
    finally:
        if sink.alive():
            sink.terminate()

    for view, rows in last.items():
        columns = ["close", *INDICATOR_COLUMNS] if view.startswith("indicators") else [
            "open", "high", "low", "close", "volume", "vwap", "trade_count"]
        for pair, row in rows.items():
            online = store.get_online_features(
                features=[f"{view}:{c}" for c in ("window_start_ms", *columns)],
                entity_rows=[{"pair": pair}]).to_dict()
            assert online["window_start_ms"] == [row["window_start_ms"]], (view, pair)
            for column in columns:
                assert online[column][0] == pytest.approx(row[column], abs=1e-9, nan_ok=True)
    assert [v for *_, v in read_topic(kafka_settings, prefix + DEAD_LETTER)] == []
    by_event = {(view, r["pair"], r["window_end_ms"]): r
                for view, topic in (("candles_1m", prefix + "candles"),
                                    ("indicators_1m", prefix + "technical_indicators"))
                for r in sources[topic]}
    log = [orjson.loads(v) for *_, v in read_topic(kafka_settings, prefix + ONLINE_WRITES)
           if v is not None]
    assert len(log) > len(last["candles_1m"])
    for entry in log:
        row = by_event[(entry["view"], entry["entity"], entry["event_ms"])]
        for name, value in entry["values"].items():
            if name in row:
                assert value == pytest.approx(row[name], abs=1e-9, nan_ok=True) or (
                    value is None and isinstance(row[name], float) and math.isnan(row[name]))
    written = written_rows([orjson.dumps(e) for e in log])
    report = consistency_report(store, START, END, "markets", written)
    assert all(f.match_rate == 1.0 for f in report.features)
    assert {v.view: v.extra for v in report.views if v.view.endswith("_1m")} == {
        "candles_1m": 0, "indicators_1m": 0}
    assert sink.log_path.read_text().count('"event": "assigned"') >= 4


def _online_starts(store: object) -> dict[tuple[str, str], int]:
    """(view, pair) -> the window start of the row the online store holds."""
    out = {}
    for view in ("candles_1m", "indicators_1m"):
        for pair in ("XBT/USD", "ETH/USD"):
            got = store.get_online_features(  # type: ignore[attr-defined]
                features=[f"{view}:window_start_ms"], entity_rows=[{"pair": pair}]).to_dict()
            if got["window_start_ms"][0] is not None:
                out[(view, pair)] = int(got["window_start_ms"][0])
    return out

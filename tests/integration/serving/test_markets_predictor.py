"""The markets predictor end to end: real Kafka, the real online sink into a real Feast online
store (SQLite; Redis too for the first test), real XGBoost models in a real MLflow registry
(SQLite tracking)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import orjson
import pytest
from feast import FeatureStore
from mlflow import MlflowClient

from cli.online_sink import sink_kinds
from features.indicators import INDICATOR_COLUMNS
from features.model_contract import FEATURE_SERVICES, MODEL_NAMES, feature_columns
from features.schemas.candle import record_key
from serving.feast_definitions import definitions
from serving.models import ModelWatcher
from serving.online_features import FeatureServiceReader
from serving.settings import FeastSettings
from serving.store import feast_redis_connection
from streaming.partitioning import partition_for
from streaming.pipelines.markets_predictor import PredictorTopics, predictor_processor
from streaming.processors.markets_predictor import PredictorGroup
from streaming.runtime.clients import make_producer
from streaming.runtime.processor import StreamProcessor
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings
from streaming.sinks.online_store import online_sink_processor
from streaming.topics import CANDLES, TopicSpec, ensure_topics
from tests.integration.serving.model_registry import register, sqlite_registry
from tests.integration.serving.offline_tables import local_repo
from tests.support.entity_keys import entity_key
from tests.support.processes import BraidProcess

pytestmark = pytest.mark.integration

PARTITIONS = 4
MINUTE = 60_000
NAME = MODEL_NAMES["markets"]
SERVICE = FEATURE_SERVICES["markets"]


def service_columns() -> list[str]:
    """The model's input columns, from the Feast definitions (not from the code under test)."""
    _, _, services = definitions(FeastSettings(offline_root="/nonexistent"))
    service = next(s for s in services if s.name == SERVICE)
    return feature_columns([(p.name_to_use(), [f.name for f in p.features])
                            for p in service.feature_view_projections])


def candle_rows(pair: str, end_ms: int, seed: int, nan: bool = False
                ) -> tuple[dict[str, object], dict[str, object]]:
    """A final 1-minute candle and its indicator row (as the processors publish them)."""
    rng = np.random.default_rng(seed)
    base = {"pair": pair, "window_ms": MINUTE, "window_start_ms": end_ms - MINUTE,
            "window_end_ms": end_ms}
    prices = [float(p) for p in 100 + rng.random(5)]
    candle = {**base, "open": prices[0], "high": max(prices) + 1, "low": min(prices) - 1,
              "close": prices[1], "volume": float(rng.random() * 10), "vwap": prices[2],
              "trade_count": int(rng.integers(1, 50))}
    indicator: dict[str, object] = {**base, "close": prices[1]}
    for column in INDICATOR_COLUMNS:
        indicator[column] = float(rng.normal())
    if nan:
        indicator["adx_14"] = None  # not warmed up: null on the wire
    return candle, indicator


def expected_features(candle: dict[str, object], indicator: dict[str, object]) -> np.ndarray:
    """The service's columns gathered from the published rows themselves."""
    rows = {"candles_1m": candle, "indicators_1m": indicator}
    return np.array([[float(rows[c.split("__")[0]][c.split("__")[1]])  # type: ignore[arg-type]
                      for c in service_columns()]])


@dataclass
class Rig:
    kafka: KafkaSettings
    store: FeatureStore
    topics: PredictorTopics
    prefix: str

    def publish(self, rows: list[tuple[dict[str, object], dict[str, object]]],
                extra: list[bytes] = ()) -> None:  # type: ignore[assignment]
        producer = make_producer(self.kafka)
        for candle, indicator in rows:
            for topic, row in ((self.prefix + CANDLES, candle),
                               (self.topics.indicators, indicator)):
                pair = str(row["pair"])
                producer.produce(topic, key=record_key(pair, MINUTE, int(row["window_start_ms"])),  # type: ignore[call-overload]
                                 value=orjson.dumps(row),
                                 partition=partition_for(pair, PARTITIONS))
        for raw in extra:  # keyed as producers key them (garbage: any key)
            producer.produce(self.topics.indicators, key=entity_key(raw), value=raw,
                             partition=0)
        assert producer.flush(30) == 0

    def sink(self) -> StreamProcessor:
        # a store of its own, as in a deployment (the sink is another process): one Feast
        # SQLite connection shared by two threads would show the reader a write half-done
        store = FeatureStore(repo_path=str(self.store.repo_path))
        return online_sink_processor(
            self.kafka, store, sink_kinds(["markets"], self.prefix),
            group=self.prefix + "sink", dead_letter_topic=self.topics.dead_letter,
            checkpoint_topic=self.topics.checkpoints)

    def predictions(self) -> list[dict[str, object]]:
        return [orjson.loads(v) for _, _, _, v in read_topic(self.kafka, self.topics.predictions,
                                                             settle_s=0.5) if v is not None]


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path, kafka_settings: KafkaSettings,
        unique_topic_prefix: str) -> Rig:
    """Topics, a MLflow registry and a Feast repo (SQLite online store, or Redis when the test
    is parametrized with "redis")."""
    topics = PredictorTopics.prefixed(unique_topic_prefix)
    candles = TopicSpec(unique_topic_prefix + CANDLES, PARTITIONS, cleanup_policy="compact",
                        retention_ms=-1)
    ensure_topics(kafka_settings, [*topics.specs(PARTITIONS), candles])
    sqlite_registry(tmp_path)
    redis = None
    if getattr(request, "param", "sqlite") == "redis":
        redis = feast_redis_connection(request.getfixturevalue("redis_url"))
    store = local_repo(tmp_path / "repo", tmp_path / "offline", redis)
    return Rig(kafka_settings, store, topics, unique_topic_prefix)


@pytest.fixture
def running() -> Iterator[Callable[[StreamProcessor], None]]:
    """Start processors on threads; stop and join them at the end of the test."""
    started: list[tuple[StreamProcessor, threading.Thread]] = []

    def start(processor: StreamProcessor) -> None:
        thread = threading.Thread(target=processor.run, kwargs={"install_signals": False})
        thread.start()
        started.append((processor, thread))

    yield start
    for processor, thread in started:
        processor.stop()
        thread.join(60)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def decided(group: PredictorGroup) -> int:
    return sum(n for reason, n in group.counts.items() if reason != "other_duration")


@pytest.mark.slow
@pytest.mark.parametrize("rig", ["sqlite", "redis"], indirect=True)
def test_predictions_equal_xgboost_on_the_candles_features_and_skips_are_counted(
        rig: Rig, running: Callable[[StreamProcessor], None]) -> None:
    columns = service_columns()
    model = register(NAME, columns, seed=1)
    reader = FeatureServiceReader(rig.store, SERVICE, "pair")
    assert reader.columns == columns
    watcher = ModelWatcher(f"models:/{NAME}@champion", reader.columns, SERVICE, poll_s=60)
    watcher.check()
    now_end = int(time.time() * 1000) // MINUTE * MINUTE
    good = [candle_rows(p, now_end, seed) for seed, p in enumerate(("XBT/USD", "ETH/USD",
                                                                     "SOL/USD"))]
    nan = candle_rows("ADA/USD", now_end, 7, nan=True)
    stale = candle_rows("DOT/USD", now_end - 10 * MINUTE, 8)  # 10 min old, TTL 2 min
    orphan = candle_rows("XRP/USD", now_end, 9)[1]  # its candle never reaches the store
    hourly = {**candle_rows("XBT/USD", now_end, 10)[1], "window_ms": 3_600_000}
    rig.publish([*good, nan, stale])
    rig.publish([], extra=[orjson.dumps(orphan), orjson.dumps(hourly), b"not json",
                           orjson.dumps({"pair": "XBT/USD", "window_ms": "1m"})])

    processor, group = predictor_processor(
        rig.kafka, reader, watcher, window_ms=reader.window_ms, topics=rig.topics,
        group=rig.prefix + "predictor", feature_wait_ms=4_000)
    running(processor)
    # the predictor sees the rows before the sink has written any: they wait for it
    wait_for(lambda: len(group.pending) == 6, "the rows to wait for the online sink")
    assert decided(group) == 0
    rig.sink().run(max_idle_s=2, install_signals=False)
    wait_for(lambda: decided(group) == 6, "a decision on every row")

    assert group.counts == {"predictions": 3, "nan": 1, "stale": 1, "missing": 1,
                            "other_duration": 1}
    got = {str(p["pair"]): p for p in rig.predictions()}
    assert sorted(got) == ["ETH/USD", "SOL/USD", "XBT/USD"]
    for candle, indicator in good:
        prediction = got[str(candle["pair"])]
        expected = model.classifier.predict_proba(expected_features(candle, indicator))[0, 1]
        assert prediction["prediction"] == pytest.approx(float(expected), rel=1e-6)
        assert prediction["model_name"] == NAME and prediction["model_version"] == "1"
        assert prediction["window_end_ms"] == now_end
        assert prediction["feature_service"] == SERVICE
        age = int(prediction["feature_age_ms"])  # type: ignore[call-overload]
        assert 0 <= age <= int(time.time() * 1000) - now_end
    letters = [orjson.loads(v) for _, _, _, v in read_topic(rig.kafka, rig.topics.dead_letter)
               if v is not None]
    reasons = sorted(str(letter["reason"]) for letter in letters
                     if letter["processor"] == rig.prefix + "predictor")
    assert len(reasons) == 2
    assert reasons[0].startswith("decode: not JSON")
    assert reasons[1] == "schema: window_ms must be a non-negative integer"

    # a replay (a new group from the start of the topic) publishes byte-identical records
    replay, replay_group = predictor_processor(
        rig.kafka, reader, watcher, window_ms=reader.window_ms, topics=rig.topics,
        group=rig.prefix + "replay", feature_wait_ms=500)
    replay.run(max_idle_s=2, install_signals=False)
    assert replay_group.counts["predictions"] == 3
    values = [v for _, _, _, v in read_topic(rig.kafka, rig.topics.predictions)]
    assert len(values) == 6 and len(set(values)) == 3


def test_the_champion_is_swapped_live_and_a_wrong_signature_is_refused(
        rig: Rig, running: Callable[[StreamProcessor], None]) -> None:
    columns = service_columns()
    first = register(NAME, columns, seed=1)
    reader = FeatureServiceReader(rig.store, SERVICE, "pair")
    watcher = ModelWatcher(f"models:/{NAME}@champion", reader.columns, SERVICE, poll_s=0.2)
    watcher.start()
    processor, group = predictor_processor(
        rig.kafka, reader, watcher, window_ms=reader.window_ms, topics=rig.topics,
        group=rig.prefix + "predictor", feature_wait_ms=10_000)
    running(processor)
    running(rig.sink())
    end = int(time.time() * 1000) // MINUTE * MINUTE
    client = MlflowClient()
    try:
        phases = []
        # 1: the first champion
        rows = candle_rows("XBT/USD", end, 1)
        rig.publish([rows])
        wait_for(lambda: group.counts["predictions"] == 1, "the first prediction")
        phases.append((rows, first))
        # 2: a model over other columns moves to champion: refused, the first one stays
        wrong = register(NAME, list(reversed(columns)), seed=2, alias=None)
        client.set_registered_model_alias(NAME, "champion", wrong.version)
        wait_for(lambda: wrong.version in watcher.refused, "the refusal")
        reason = watcher.refused[wrong.version]
        assert str(list(reversed(columns))) in reason and str(columns) in reason
        assert watcher.current is not None and watcher.current.version == first.version
        rows = candle_rows("ETH/USD", end, 2)
        rig.publish([rows])
        wait_for(lambda: group.counts["predictions"] == 2, "the second prediction")
        phases.append((rows, first))
        # 3: a good new version moves to champion: swapped in without a restart
        third = register(NAME, columns, seed=3, alias=None)
        client.set_registered_model_alias(NAME, "champion", third.version)
        wait_for(lambda: watcher.current is not None
                 and watcher.current.version == third.version, "the swap")
        rows = candle_rows("SOL/USD", end, 3)
        rig.publish([rows])
        wait_for(lambda: group.counts["predictions"] == 3, "the third prediction")
        phases.append((rows, third))
    finally:
        watcher.stop()
    got = {str(p["pair"]): p for p in rig.predictions()}
    for (candle, indicator), model in phases:
        prediction = got[str(candle["pair"])]
        assert prediction["model_version"] == model.version
        expected = model.classifier.predict_proba(expected_features(candle, indicator))[0, 1]
        assert prediction["prediction"] == pytest.approx(float(expected), rel=1e-6)
    assert got["XBT/USD"]["prediction"] != got["SOL/USD"]["prediction"]


def test_rows_waiting_for_the_sink_are_predicted_after_a_restart(rig: Rig) -> None:
    model = register(NAME, service_columns(), seed=6)
    reader = FeatureServiceReader(rig.store, SERVICE, "pair")
    watcher = ModelWatcher(f"models:/{NAME}@champion", reader.columns, SERVICE, poll_s=60)
    watcher.check()
    end = int(time.time() * 1000) // MINUTE * MINUTE
    rows = [candle_rows(pair, end, seed) for seed, pair in enumerate(("XBT/USD", "ETH/USD"))]
    rig.publish(rows)

    def predictor() -> tuple[StreamProcessor, PredictorGroup]:
        return predictor_processor(rig.kafka, reader, watcher, window_ms=reader.window_ms,
                                   topics=rig.topics, group=rig.prefix + "predictor",
                                   feature_wait_ms=60_000)

    first, first_group = predictor()
    thread = threading.Thread(target=first.run, kwargs={"install_signals": False})
    thread.start()
    wait_for(lambda: len(first_group.pending) == 2, "the rows to wait for the sink")
    first.stop()  # leaves with both rows undecided: its commit must not pass them
    thread.join(60)
    rig.sink().run(max_idle_s=2, install_signals=False)
    second, second_group = predictor()
    second.run(max_idle_s=3, install_signals=False)
    assert second_group.counts["predictions"] == 2
    got = {str(p["pair"]): p for p in rig.predictions()}
    for candle, indicator in rows:
        expected = model.classifier.predict_proba(expected_features(candle, indicator))[0, 1]
        assert got[str(candle["pair"])]["prediction"] == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.slow
def test_predictor_process_killed_mid_stream_loses_and_changes_no_prediction(
        rig: Rig, running: Callable[[StreamProcessor], None], tmp_path: Path) -> None:
    """`braid markets predictor` as a process, killed with -9 three times (at random points
    while a round of candles is in flight) and stopped with SIGTERM once, started again each
    time: every row gets a prediction, every record of a row (replays included) is the same
    bytes, each equals the model on the row's own features, and a row is skipped only as an
    already predicted replay."""
    model = register(NAME, service_columns(), seed=4)
    running(rig.sink())
    predictor = BraidProcess(
        ["markets", "predictor", "--repo", str(rig.store.repo_path), "--topic-prefix",
         rig.prefix, "--group", rig.prefix + "predictor"], rig.kafka, tmp_path / "predictor.log",
        {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(),
         "BRAID_TOPIC_MARKET_PARTITIONS": str(PARTITIONS)}).start()
    pairs = ("XBT/USD", "ETH/USD", "SOL/USD", "ADA/USD")
    # candles ending from the next minute on: never older than the views' TTL when published
    base = int(time.time() * 1000) // MINUTE * MINUTE
    published: dict[tuple[str, int], tuple[dict[str, object], dict[str, object]]] = {}
    jitter = random.Random(5)

    def predicted() -> set[tuple[str, int]]:
        return {(str(p["pair"]), int(p["window_end_ms"]))  # type: ignore[call-overload]
                for p in rig.predictions()}

    try:
        predictor.wait_for_log('"event": "assigned"', 1, timeout_s=120)
        for k in range(8):
            end = base + (k + 1) * MINUTE
            rows = [candle_rows(pair, end, 10 * k + i) for i, pair in enumerate(pairs)]
            rig.publish(rows)
            published.update({(pair, end): r for pair, r in zip(pairs, rows, strict=True)})
            if k in (1, 3, 4, 6):
                time.sleep(jitter.uniform(0, 0.3))  # before, during or after the decision
                if k == 4:
                    assert predictor.terminate() == 0
                else:
                    predictor.kill9()
                predictor.start()
                predictor.wait_for_log('"event": "assigned"', predictor.starts, timeout_s=120)
            # the next round only once this one is decided: a later candle online would make
            # a replayed row `superseded` (the store keeps only the latest row)
            wait_for(lambda: predicted() >= set(published), f"round {k}'s predictions",
                     timeout_s=120)
    finally:
        if predictor.alive():
            predictor.terminate()

    records: dict[tuple[str, int], set[bytes]] = {}
    for _, _, _, value in read_topic(rig.kafka, rig.topics.predictions):
        assert value is not None
        row = orjson.loads(value)
        records.setdefault((row["pair"], row["window_end_ms"]), set()).add(value)
    assert set(records) == set(published)
    for key, values in records.items():
        assert len(values) == 1, f"{key}: a replay published other values: {values}"
        prediction = orjson.loads(next(iter(values)))
        candle, indicator = published[key]
        expected = model.classifier.predict_proba(expected_features(candle, indicator))[0, 1]
        assert prediction["prediction"] == pytest.approx(float(expected), rel=1e-6)
        assert prediction["model_version"] == model.version
    # A restart replays from the last commit (async, about once a second): rows predicted but
    # not yet committed come again, and once a later candle is online they are `superseded`
    # (no record; the first run's stays). Any other reason would be a row left unpredicted.
    skipped = [orjson.loads(line) for line in (tmp_path / "predictor.log").read_text().splitlines()
               if line.startswith("{") and '"no prediction"' in line]
    assert all(str(s["reason"]).startswith("superseded") for s in skipped), skipped
    assert all((s["pair"], s["window_end_ms"]) in records for s in skipped)
    assert [v for *_, v in read_topic(rig.kafka, rig.topics.dead_letter)] == []

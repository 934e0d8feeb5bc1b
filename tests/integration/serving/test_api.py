"""The prediction API over real components: Feast's online store (SQLite) written through Feast,
a real XGBoost model from a real MLflow registry, real prediction topics on Kafka; and
schemathesis against its OpenAPI (no server error on any generated request)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from feast import FeatureStore
from hypothesis import HealthCheck, given, settings

from features.indicators import INDICATOR_COLUMNS
from features.model_contract import FEATURE_SERVICES, MODEL_NAMES
from serving.api.app import Services, create_app
from serving.api.latest import LatestByKey
from serving.models import ModelWatcher
from serving.online_features import FeatureServiceReader
from streaming.runtime.clients import make_producer
from streaming.settings import KafkaSettings
from streaming.topics import MARKET_PREDICTIONS, SENSOR_PREDICTIONS, TopicSpec, ensure_topics
from tests.integration.serving.model_registry import Registered, register, sqlite_registry
from tests.integration.serving.offline_tables import local_repo

pytestmark = pytest.mark.integration

HOUR = 3_600_000
TOKEN = "s3cret-token"
SERVICE = FEATURE_SERVICES["markets"]
PREFIX = "apitest."


@dataclass
class Api:
    app: FastAPI
    model: Registered
    written: dict[str, dict[str, object]]  # what XBT/USD's rows hold online, by view
    columns: list[str]
    services: Services
    kafka: KafkaSettings


def write_online(store: FeatureStore, pair: str, end_ms: int, seed: int, nan: bool = False
                 ) -> dict[str, dict[str, object]]:
    """Write a 1-hour candle and its indicator row through Feast; return them by view."""
    rng = np.random.default_rng(seed)
    base: dict[str, list[object]] = {"pair": [pair], "window_start_ms": [end_ms - HOUR],
                                     "window_end_ms": [end_ms]}
    candle: dict[str, list[object]] = {**base, **{c: [float(100 + rng.random())] for c in
                         ("open", "high", "low", "close", "volume", "vwap")},
              "trade_count": [int(rng.integers(1, 9))]}
    indicator: dict[str, list[object]] = {**base, "close": candle["close"],
                 **{c: [float(rng.normal())] for c in INDICATOR_COLUMNS}}
    if nan:
        indicator["rsi_14"] = [float("nan")]
    stamp = pd.to_datetime([end_ms], unit="ms", utc=True)
    written: dict[str, dict[str, list[object]]] = {"candles_1h": candle,
                                                   "indicators_1h": indicator}
    for view, values in written.items():
        frame = pd.DataFrame(values)
        frame["event_timestamp"] = stamp
        store.write_to_online_store(view, frame)
    return {view: {k: v[0] for k, v in values.items()} for view, values in written.items()}


def produce(kafka: KafkaSettings, topic: str, records: list[dict[str, object]]) -> None:
    producer = make_producer(kafka)
    for record in records:
        producer.produce(topic, key=str(record.get("pair", record.get("client"))),
                         value=orjson.dumps(record))
    assert producer.flush(30) == 0


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, kafka_settings: KafkaSettings
        ) -> Iterator[Api]:
    folder: Path = tmp_path_factory.mktemp("api")
    with pytest.MonkeyPatch.context() as mp:
        # 1-hour candles: a TTL of 2 h leaves the test time to run before the rows go stale
        mp.setenv("BRAID_FEAST_DURATIONS", '["1h"]')
        store = local_repo(folder / "repo", folder / "offline")
    reader = FeatureServiceReader(store, SERVICE, "pair")
    sqlite_registry(folder)
    model = register(MODEL_NAMES["markets"], reader.columns, seed=5)
    watcher = ModelWatcher(f"models:/{MODEL_NAMES['markets']}@champion", reader.columns,
                           SERVICE, poll_s=60)
    watcher.check()
    now = int(time.time() * 1000)
    written = write_online(store, "XBT/USD", now, 1)
    write_online(store, "ETH/USD", now - 3 * HOUR, 2)  # older than the views' TTL (2 h)
    write_online(store, "ADA/USD", now, 3, nan=True)
    topics = {name: PREFIX + name for name in (MARKET_PREDICTIONS, SENSOR_PREDICTIONS)}
    ensure_topics(kafka_settings, [TopicSpec(t, 2) for t in topics.values()])
    stream = {"pair": "XBT/USD", "window_ms": HOUR, "prediction": 0.25,
              "model_name": MODEL_NAMES["markets"], "model_version": "1",
              "feature_service": SERVICE, "feature_age_ms": 40}
    produce(kafka_settings, topics[MARKET_PREDICTIONS], [
        {**stream, "window_end_ms": now, "prediction": 0.75},
        {**stream, "window_end_ms": now - HOUR}])  # an older candle arriving later
    produce(kafka_settings, topics[SENSOR_PREDICTIONS], [{
        "v": 1, "client": "c-1", "timestamp_ms": now, "trigger": "SZ", "vector": [1, 2, 3, 4, 5],
        "probability": 0.9, "alert": True, "threshold": 0.5, "model_version": "m/1",
        "edges_version": "e1"}])
    predictions = LatestByKey(kafka_settings, topics[MARKET_PREDICTIONS], key_field="pair",
                              time_field="window_end_ms", lookback_ms=HOUR).start()
    alerts = LatestByKey(kafka_settings, topics[SENSOR_PREDICTIONS], key_field="client",
                         time_field="timestamp_ms", lookback_ms=HOUR).start()
    assert predictions.caught_up.wait(30) and alerts.caught_up.wait(30)
    services = Services(reader, watcher, predictions, alerts, TOKEN)
    yield Api(create_app(services), model, written, reader.columns, services, kafka_settings)
    predictions.stop()
    alerts.stop()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_predictions_now_and_from_the_stream_and_clear_errors(api: Api) -> None:
    client = TestClient(api.app)
    response = client.post("/predict", json={"pair": "XBT/USD"}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    row = [[float(api.written[c.split("__")[0]][c.split("__")[1]])  # type: ignore[arg-type]
             for c in api.columns]]
    expected = api.model.classifier.predict_proba(pd.DataFrame(row, columns=api.columns))[0, 1]
    assert body["prediction"] == pytest.approx(float(expected), rel=1e-6)
    assert (body["model_name"], body["model_version"], body["source"]) == (
        MODEL_NAMES["markets"], api.model.version, "online")

    stale = client.post("/predict", json={"pair": "ETH/USD"}, headers=AUTH)
    assert stale.status_code == 409 and stale.json()["detail"].startswith("stale: candles_1h")
    nan = client.post("/predict", json={"pair": "ADA/USD"}, headers=AUTH)
    assert nan.status_code == 409 and "indicators_1h__rsi_14" in nan.json()["detail"]
    unknown = client.post("/predict", json={"pair": "NOPE/USD"}, headers=AUTH)
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "no online features for pair 'NOPE/USD'"
    for body_sent, field in (({}, "pair"), ({"pair": 7}, "pair"), ({"pair": ""}, "pair")):
        bad = client.post("/predict", json=body_sent, headers=AUTH)
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", field]

    stream = client.get("/predict/XBT/USD", headers=AUTH)
    assert stream.status_code == 200
    assert (stream.json()["prediction"], stream.json()["source"]) == (0.75, "stream")
    assert client.get("/predict/ETH/USD", headers=AUTH).status_code == 404
    alert = client.get("/alerts/c-1", headers=AUTH)
    assert alert.status_code == 200 and alert.json()["alert"] is True
    missing = client.get("/alerts/c-2", headers=AUTH)
    assert (missing.status_code, missing.json()["detail"]) == (
        404, "no alert decision for client 'c-2'")

    assert client.get("/alerts/c-1").status_code == 401
    wrong = client.post("/predict", json={"pair": "XBT/USD"},
                        headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json()["model"] == f"{MODEL_NAMES['markets']}/{api.model.version}"
    assert health.json()["caught_up"] is True  # both topics were read to their end above
    # a follower that has not read its topic to the end yet: not caught up
    unread = LatestByKey(api.kafka, PREFIX + MARKET_PREDICTIONS, key_field="pair",
                         time_field="window_end_ms", lookback_ms=HOUR)
    fresh = TestClient(create_app(replace(api.services, predictions=unread)))
    assert fresh.get("/health").json()["caught_up"] is False


def test_no_generated_request_gets_a_server_error(api: Api) -> None:
    """schemathesis' default checks (no 5xx, documented status codes, response schemas, auth
    enforced) on generated requests to every operation. The schemathesis pytest plugin
    (`from_fixture`) fails on pytest 9, so the operations' hypothesis strategies run here."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert {o.path for o in operations} == {"/health", "/predict", "/predict/{pair}",
                                            "/alerts/{client}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH)

        check()

"""The Feast repository is generated from features/ and reads the Delta tables."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast import FeatureStore
from feast.types import Float64, Int64

from features.indicators import INDICATOR_COLUMNS
from features.schemas.candle import CANDLE_ARROW_SCHEMA
from features.sensors.schemas import FEATURES
from serving.feast_definitions import definitions
from serving.settings import FEATURE_REPO, FeastSettings

pytestmark = pytest.mark.integration


def test_every_indicator_of_features_is_a_float_feature_of_each_indicator_view() -> None:
    _, views, _ = definitions(FeastSettings(offline_root="/tmp/x", durations=["1m", "1h"]))
    by_name = {view.name: view for view in views}
    assert {"candles_1m", "candles_1h", "indicators_1m", "indicators_1h", "sensor_fa",
            "sensor_fi", "sensor_fd", "sensor_sx", "sensor_sy"} == set(by_name)
    for name in ("indicators_1m", "indicators_1h"):
        features = {f.name: f.dtype for f in by_name[name].features}
        assert set(INDICATOR_COLUMNS) <= set(features)
        assert all(features[c] == Float64 for c in INDICATOR_COLUMNS)
    candles = {f.name: f.dtype for f in by_name["candles_1m"].features}
    assert candles["trade_count"] == Int64 and candles["vwap"] == Float64
    assert set(candles) == set(CANDLE_ARROW_SCHEMA.names) - {"pair", "window_ms"}
    ttl, source = by_name["indicators_1h"].ttl, by_name["indicators_1m"].batch_source
    assert ttl is not None and ttl.total_seconds() == 2 * 3600
    assert source is not None and source.tags["braid.window_ms"] == "60000"
    for name in FEATURES:
        fields = {f.name: f.dtype for f in by_name[f"sensor_{name.lower()}"].features}
        assert fields == {name: Float64, f"{name}_bin": Int64}


def test_feature_services_name_the_models_inputs() -> None:
    _, _, services = definitions(FeastSettings(offline_root="/tmp/x"))
    by_name = {s.name: s for s in services}
    alert = [(p.name, f.name) for p in by_name["sensors_alert_v1"].feature_view_projections
             for f in p.features]
    assert alert == [("sensor_sx", "SX"), ("sensor_sy", "SY"), ("sensor_fa", "FA_bin"),
                     ("sensor_fi", "FI_bin"), ("sensor_fd", "FD_bin")]
    markets = [p.name for p in by_name["markets_direction_v1"].feature_view_projections]
    assert markets == ["candles_1m", "indicators_1m"]
    indicators = [f.name for f in by_name["markets_direction_v1"].feature_view_projections[1]
                  .features]
    assert indicators == list(INDICATOR_COLUMNS)  # bounds and close: the candle view's
    for service in services:
        names = [f.name for p in service.feature_view_projections for f in p.features]
        assert len(names) == len(set(names)), f"{service.name} repeats a feature name"


def test_a_feature_service_works_with_feasts_default_names(
        feast_store: FeatureStore, market_tables: tuple[pa.Table, pa.Table]) -> None:
    # Feast refuses a service that repeats a feature name unless full_feature_names=True
    candles, indicators = market_tables
    rows = [t.filter(pa.compute.and_(pa.compute.equal(t["window_ms"], 60_000),
                                     pa.compute.equal(t["pair"], "XBT/USD"))).slice(700, 1)
            .to_pylist()[0] for t in (candles, indicators)]
    at = datetime.fromtimestamp(rows[0]["window_end_ms"] / 1000, UTC)
    service = feast_store.get_feature_service("markets_direction_v1")
    got = feast_store.get_historical_features(
        entity_df=pd.DataFrame({"pair": ["XBT/USD"], "event_timestamp": [at]}),
        features=service).to_df().iloc[0]
    assert got["window_end_ms"] == rows[0]["window_end_ms"]
    assert got["close"] == rows[0]["close"] and got["volume"] == rows[0]["volume"]
    assert np.isclose(got["rsi_14"], rows[1]["rsi_14"], rtol=0, atol=1e-9)
    online = feast_store.get_online_features(features=service,
                                             entity_rows=[{"pair": "XBT/USD"}]).to_dict()
    assert {"window_end_ms", "close", "volume", "rsi_14", "macd"} <= set(online)


def test_historical_features_come_from_the_delta_table_of_the_views_duration(
        feast_store: FeatureStore, market_tables: tuple[pa.Table, pa.Table]) -> None:
    _, indicators = market_tables
    hourly = indicators.filter(pa.compute.equal(indicators["window_ms"], 3_600_000))
    row = hourly.filter(pa.compute.equal(hourly["pair"], "ETH/USD")).slice(40, 1).to_pylist()[0]
    at = datetime.fromtimestamp(row["window_end_ms"] / 1000, UTC)
    entity = pd.DataFrame({"pair": ["ETH/USD"], "event_timestamp": [at]})
    got = feast_store.get_historical_features(
        entity_df=entity, features=[f"indicators_1h:{c}" for c in INDICATOR_COLUMNS]
        + ["indicators_1h:window_start_ms"]).to_df().iloc[0]
    assert got["window_start_ms"] == row["window_start_ms"]
    for column in INDICATOR_COLUMNS:
        assert np.isclose(got[column], row[column], rtol=0, atol=1e-9, equal_nan=True), column


def test_materialize_then_online_read_returns_the_latest_candle(
        feast_store: FeatureStore, market_tables: tuple[pa.Table, pa.Table]) -> None:
    candles, _ = market_tables
    minute = candles.filter(pa.compute.and_(pa.compute.equal(candles["window_ms"], 60_000),
                                            pa.compute.equal(candles["pair"], "XBT/USD")))
    last = minute.slice(minute.num_rows - 1).to_pylist()[0]
    end = datetime.fromtimestamp(last["window_end_ms"] / 1000, UTC)
    feast_store.materialize(start_date=datetime(2018, 1, 1, tzinfo=UTC), end_date=end,
                            feature_views=["candles_1m"])
    online = feast_store.get_online_features(
        features=["candles_1m:close", "candles_1m:window_start_ms", "candles_1m:trade_count"],
        entity_rows=[{"pair": "XBT/USD"}]).to_dict()
    assert online["window_start_ms"] == [last["window_start_ms"]]
    assert online["close"] == [last["close"]]
    assert online["trade_count"] == [last["trade_count"]]


def test_feast_cli_plans_the_repository_from_feature_repo(tmp_path: Path) -> None:
    feast = str(Path(sys.executable).with_name("feast"))
    env = {"BRAID_FEAST_OFFLINE_ROOT": str(tmp_path / "offline"), "PATH": "/usr/bin:/bin",
           "HOME": str(Path.home())}
    yaml = tmp_path / "feature_store.yaml"
    yaml.write_text((FEATURE_REPO / "feature_store.yaml").read_text().replace(
        "../var/feast/", f"{tmp_path}/"))
    result = subprocess.run([feast, "-f", str(yaml), "plan"], cwd=FEATURE_REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("indicators_1m", "indicators_1h", "candles_1m", "markets_direction_v1",
                 "sensors_alert_v1"):
        assert name in result.stdout


def test_feast_materialize_skips_a_view_whose_table_is_not_backfilled_yet(
        tmp_path: Path, offline_root: Path, market_tables: tuple[pa.Table, pa.Table]) -> None:
    # `offline_root` holds the markets tables only: the sensors' tables were never backfilled
    feast = str(Path(sys.executable).with_name("feast"))
    env = {"BRAID_FEAST_OFFLINE_ROOT": str(offline_root), "PATH": "/usr/bin:/bin",
           "HOME": str(Path.home()), "PYTHONPATH": str(FEATURE_REPO.parent)}
    yaml = tmp_path / "feature_store.yaml"
    yaml.write_text((FEATURE_REPO / "feature_store.yaml").read_text().replace(
        "../var/feast/", f"{tmp_path}/"))
    for args in (["apply"], ["materialize", "2018-01-01T00:00:00", "2018-12-31T00:00:00"]):
        done = subprocess.run([feast, "-f", str(yaml), *args], cwd=FEATURE_REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    output = done.stdout + done.stderr
    for table in ("sensor_features", "sensor_readings"):
        assert f"{offline_root / table} does not exist" in output
    assert "Traceback" not in output

    _, indicators = market_tables
    minute = indicators.filter(pa.compute.and_(pa.compute.equal(indicators["window_ms"], 60_000),
                                               pa.compute.equal(indicators["pair"], "ETH/USD")))
    last = minute.slice(minute.num_rows - 1).to_pylist()[0]
    store = FeatureStore(repo_path=str(FEATURE_REPO), fs_yaml_file=yaml)
    online = store.get_online_features(
        features=["candles_1m:close", "indicators_1m:rsi_14", "indicators_1m:window_start_ms"],
        entity_rows=[{"pair": "ETH/USD"}]).to_dict()
    assert online["window_start_ms"] == [last["window_start_ms"]]
    assert online["close"] == [last["close"]]
    assert online["rsi_14"] == [last["rsi_14"]]

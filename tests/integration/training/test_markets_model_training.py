"""The markets model on real 2018 XBT/USD and ETH/USD trades, through Feast and a real MLflow.

Labels, the split and the test metrics are checked against values computed here from the raw
candles and with sklearn, not against the training code's own intermediate results.
"""

from __future__ import annotations

import io
import json

import mlflow.xgboost
import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore
from mlflow.tracking import MlflowClient
from sklearn.metrics import accuracy_score, roc_auc_score

from features.model_contract import CHALLENGER, CHAMPION, MODEL_NAMES, model_uri
from tests.integration.serving.offline_tables import candle_tables
from training.markets_model import service_columns, train_markets
from training.results import TrainResult
from training.training_sets import training_set

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAIRS = ["XBT/USD", "ETH/USD"]
START, END = "2018-05-08", "2018-05-12"
MINUTE = 60_000


@pytest.fixture(scope="module")
def first_run(markets_store: FeatureStore, mlflow_server: str) -> TrainResult:
    # The worker's MLflow server is shared with the other training modules (the reproduce tests
    # register markets versions of their own): start this module on an empty registry, so the
    # version trained here is the first one ever. Name the registry too: a client's registry
    # defaults to the process-wide one, which an earlier module may have set to its own server.
    client = MlflowClient(mlflow_server, mlflow_server)
    if client.search_registered_models(f"name = '{MODEL_NAMES['markets']}'"):
        client.delete_registered_model(MODEL_NAMES["markets"])
    return train_markets(START, END, PAIRS, horizon=1, store=markets_store,
                         tracking_uri=mlflow_server)


def _predictions(client: MlflowClient, run_id: str) -> pd.DataFrame:
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/test_predictions.csv")
    return pd.read_csv(io.StringIO(text))


def _minute_closes() -> dict[str, pd.Series]:
    """Close by candle end (ms), per pair, from the raw candle table (not the training set)."""
    candles = candle_tables(days=3)[0].to_pandas()
    minute = candles[candles["window_ms"] == MINUTE]
    return {pair: rows.set_index("window_end_ms")["close"].sort_index()
            for pair, rows in minute.groupby("pair")}


def test_first_model_is_trained_on_the_test_period_logged_and_champion(
        first_run: TrainResult, mlflow_server: str, markets_store: FeatureStore) -> None:
    client = MlflowClient(mlflow_server, mlflow_server)
    run = client.get_run(first_run.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags

    # the first version ever is champion, and the alias says so in the registry
    assert first_run.decision.alias == CHAMPION and first_run.decision.champion_score is None
    assert client.get_model_version_by_alias(MODEL_NAMES["markets"], CHAMPION).version \
        == first_run.version
    assert tags["promotion.decision"] == CHAMPION

    # no leakage: each part starts more than the horizon after the previous one ends
    gap = int(params["gap_ms"])
    assert gap == MINUTE  # horizon 1 x one-minute candles
    assert int(params["validation_start_ms"]) - int(params["train_end_ms"]) > gap
    assert int(params["test_start_ms"]) - int(params["validation_end_ms"]) > gap

    # the logged predictions are the test period's rows, and its metrics are theirs
    pred = _predictions(client, first_run.run_id)
    assert len(pred) == metrics["test_rows"]
    assert pred["time_ms"].min() == int(params["test_start_ms"])
    assert pred["time_ms"].max() == int(params["test_end_ms"])
    assert roc_auc_score(pred["label"], pred["p_model"]) == pytest.approx(
        metrics["test_roc_auc"], abs=1e-9)
    assert accuracy_score(pred["label"], pred["p_model"] >= 0.5) == pytest.approx(
        metrics["test_accuracy"], abs=1e-9)
    assert accuracy_score(pred["label"], pred["p_majority"] >= 0.5) == pytest.approx(
        metrics["majority_test_accuracy"], abs=1e-9)

    # labels: the close one minute later is higher, from the raw candles (a missing candle:
    # no trade, the price did not move)
    closes = _minute_closes()
    for pair, rows in pred.groupby("key"):
        series = closes[pair]
        now = series.reindex(rows["time_ms"]).to_numpy()
        later = series.reindex(rows["time_ms"] + MINUTE).to_numpy()
        later = np.where(np.isnan(later), now, later)
        assert (rows["label"].to_numpy() == (later > now)).all(), pair

    # what the run records: feature service and names, data versions and digest, code, plots
    columns = service_columns(markets_store, "markets_direction_v1")
    assert tags["feature_service"] == "markets_direction_v1"
    assert len(tags["git_commit"]) == 40
    features = json.loads(mlflow.artifacts.load_text(
        f"runs:/{first_run.run_id}/feature_service.json"))
    assert features["features"] == columns
    record = json.loads(mlflow.artifacts.load_text(
        f"runs:/{first_run.run_id}/training_set.json"))
    assert sorted(p.rsplit("/", 1)[-1] for p in record["table_versions"]) \
        == ["candles", "indicators"]
    assert len(record["entity_digest"]) == 64
    assert run.inputs is not None
    (dataset_input,) = run.inputs.dataset_inputs
    source = json.loads(dataset_input.dataset.source)
    assert source["tags"]["entity_digest"] == record["entity_digest"]
    assert "candles@v0" in source["tags"]["tables"]
    artifacts = {a.path for a in client.list_artifacts(first_run.run_id, "plots")}
    assert artifacts == {"plots/feature_importance.png", "plots/roc.png",
                         "plots/predicted_vs_actual.png"}

    # the registered model loads by alias, takes exactly the contract's columns, and gives the
    # logged test predictions
    model = mlflow.xgboost.load_model(model_uri("markets"))
    signature = mlflow.models.get_model_info(model_uri("markets")).signature
    assert signature.inputs.input_names() == columns
    assert list(model.get_booster().feature_names) == columns
    sample = pred.iloc[:: max(1, len(pred) // 200)]
    entity = pd.DataFrame({"pair": sample["key"].to_numpy(),
                           "event_timestamp": pd.to_datetime(sample["time_ms"], unit="ms",
                                                             utc=True).to_numpy()})
    frame = training_set("markets_direction_v1", entity_df=entity, store=markets_store).frame
    frame["time_ms"] = (pd.to_datetime(frame["event_timestamp"], utc=True)
                        - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "ms")
    merged = sample.merge(frame, left_on=["key", "time_ms"], right_on=["pair", "time_ms"])
    assert len(merged) == len(sample)
    again = model.predict_proba(merged[columns].astype("float64"))[:, 1]
    assert np.allclose(again, merged["p_model"], atol=1e-6)


def test_absolute_time_columns_do_not_change_a_prediction(
        first_run: TrainResult, markets_store: FeatureStore, mlflow_server: str) -> None:
    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.xgboost.load_model(model_uri("markets"))
    columns = service_columns(markets_store, "markets_direction_v1")
    x = training_set("markets_direction_v1", start="2018-05-09", end="2018-05-09T02:00",
                     pairs=PAIRS, store=markets_store).frame[columns].astype("float64")
    shifted = x.copy()
    for column in columns:
        if column.endswith(("__window_start_ms", "__window_end_ms")):
            shifted[column] += 365 * 86_400_000
    assert np.array_equal(model.predict_proba(x), model.predict_proba(shifted))


def test_retraining_on_the_same_data_and_seed_scores_the_same_and_stays_challenger(
        first_run: TrainResult, markets_store: FeatureStore, mlflow_server: str) -> None:
    again = train_markets(START, END, PAIRS, horizon=1, store=markets_store,
                          tracking_uri=mlflow_server)
    def scores(metrics: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in metrics.items() if not k.startswith("seconds_")}

    assert scores(again.metrics) == scores(first_run.metrics)
    # a tie does not beat the champion (margin 0: it must be strictly better)
    assert again.decision.alias == CHALLENGER
    assert again.decision.candidate_score == again.decision.champion_score \
        == first_run.decision.candidate_score
    client = MlflowClient(mlflow_server, mlflow_server)
    name = MODEL_NAMES["markets"]
    assert client.get_model_version_by_alias(name, CHAMPION).version == first_run.version
    assert client.get_model_version_by_alias(name, CHALLENGER).version == again.version
    run = client.get_run(again.run_id)
    assert run.data.tags["promotion.decision"] == CHALLENGER
    assert run.data.tags["promotion.champion_version"] == first_run.version
    assert run.data.metrics["promotion_champion_score"] == first_run.decision.candidate_score

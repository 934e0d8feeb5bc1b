"""A model's training set rebuilt bit for bit from its MLflow run after the range was backfilled
again, after OPTIMIZE, and refused clearly once VACUUM removed its files.

One history for the module: real ETH/USD trades from 2018-05-08 12:00 to 05-10 (a slice of the
shared file), backfilled with Spark and delta-spark into 1-minute candles and indicators for
2018-05-09 (model version 1), then backfilled again with one of its trades removed (model
version 2). The tables' deleted-file retention is one second, so the VACUUM at the end can remove
what version 1 read. Values are checked against the raw trade and against delta-rs reading the
table's old version, not only against the digests the code computes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable
from feast import FeatureStore
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from batch.backfill import BackfillConfig, run_backfill
from batch.spark_session import spark_session
from batch.table_maintenance import optimize, vacuum
from batch.table_retention import TableRetention
from cli.train import app as train_app
from features.model_contract import MODEL_NAMES
from serving.table_versions import TableVersionGone
from tests.integration.serving.offline_tables import DATA, TRADE_FILES, local_repo
from training.markets_model import train_markets
from training.reproduce import reproduce
from training.results import TrainResult
from training.sensors_model import train_sensors
from training.settings import TrainingSettings
from training.training_sets import training_set

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAIRS = ["ETH/USD"]
DAY, NEXT = date(2018, 5, 9), date(2018, 5, 10)
#: Input trades from half a day before the range: warm-up for the indicators.
FIRST_TRADE_S, LAST_TRADE_S = datetime(2018, 5, 8, 12, tzinfo=UTC).timestamp(), \
    datetime(2018, 5, 10, tzinfo=UTC).timestamp()
SHORT = TableRetention.parse("1s", "180d")
QUICK = TrainingSettings(n_estimators=60)
MINUTE = 60_000


@dataclass(frozen=True)
class History:
    root: Path
    repo: Path
    store: FeatureStore
    removed: pd.Series  # the real ETH/USD trade the second backfill did not see
    inputs: list[Path]  # the second backfill's trade files
    v1: TrainResult
    v2: TrainResult

    def table(self, name: str) -> str:
        return str(self.root / name)


def _slice(pair: str) -> pd.DataFrame:
    path = DATA / TRADE_FILES[pair]
    if not path.exists():
        pytest.skip(f"real trades missing: {path}")
    trades = pd.read_csv(path, dtype=str, keep_default_na=False)  # the file's text, as is
    seconds = trades["time"].astype(float)
    return trades[(seconds >= FIRST_TRADE_S) & (seconds < LAST_TRADE_S)]


def _backfill(spark: SparkSession, inputs: list[Path], root: Path, start: date = DAY,
              end: date = NEXT) -> dict[str, int]:
    """The range's backfill, tables kept with a one-second deleted-file retention."""
    config = BackfillConfig(inputs=[str(p) for p in inputs], start=start, end=end, pairs=PAIRS,
                            output=str(root), durations_ms=[MINUTE], show_progress=False,
                            retention=SHORT)
    return run_backfill(spark, config).table_versions


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> Iterator[History]:
    folder = tmp_path_factory.mktemp("reproduce")
    eth = _slice("ETH/USD")
    # a real trade in the middle of the range, so its candle and the indicators after it change
    in_range = eth[eth["time"].astype(float) >= datetime(2018, 5, 9, 12, tzinfo=UTC).timestamp()]
    removed = in_range.iloc[0]
    # two files one after the other, named so the backfill takes the pair from the name
    cut = eth["time"].astype(float) < datetime(2018, 5, 9, 6, tzinfo=UTC).timestamp()
    paths: dict[str, list[Path]] = {}
    for name, trades in (("eth", eth), ("eth_without_one", eth.drop(index=removed.name))):
        (folder / name).mkdir()
        paths[name] = [folder / name / "ETHUSD_1_of_2.csv", folder / name / "ETHUSD_2_of_2.csv"]
        trades[cut.loc[trades.index]].to_csv(paths[name][0], index=False)
        trades[~cut.loc[trades.index]].to_csv(paths[name][1], index=False)

    root = folder / "offline"
    repo = folder / "repo"
    spark = spark_session("braid-tests", master="local[2]", shuffle_partitions=4)
    first = _backfill(spark, paths["eth"], root)
    assert first["candles"] == 0
    store = local_repo(repo, root)
    v1 = train_markets(DAY.isoformat(), NEXT.isoformat(), PAIRS, horizon=1, store=store,
                       tracking_uri=mlflow_server, settings=QUICK)
    second = _backfill(spark, paths["eth_without_one"], root)
    assert second["candles"] == first["candles"] + 1  # one commit replacing the range
    v2 = train_markets(DAY.isoformat(), NEXT.isoformat(), PAIRS, horizon=1, store=store,
                       tracking_uri=mlflow_server, settings=QUICK)
    yield History(root, repo, store, removed, paths["eth_without_one"], v1, v2)


def _model(result: TrainResult) -> str:
    return f"{MODEL_NAMES['markets']}/{result.version}"


def _removed_minute_volume(frame: pd.DataFrame, removed: pd.Series) -> float:
    """The candles_1m volume a training-set row holds for the removed trade's minute (the row
    at the minute's end: the candle is known once its window ended)."""
    end_ms = (int(float(removed["time"]) * 1000) // MINUTE + 1) * MINUTE
    stamp = pd.Timestamp(end_ms, unit="ms", tz="UTC")
    row = frame[(frame["pair"] == "ETH/USD") & (frame["event_timestamp"] == stamp)]
    assert len(row) == 1
    return float(row["candles_1m__volume"].iloc[0])


def test_each_version_rebuilds_its_own_training_set_after_the_range_was_backfilled_again(
        history: History, mlflow_server: str) -> None:
    v1, v2 = history.v1, history.v2
    # the tables carry the retention the backfill was given
    configuration = DeltaTable(history.table("candles")).metadata().configuration
    assert configuration["delta.deletedFileRetentionDuration"] == "interval 1 seconds"
    assert configuration["delta.logRetentionDuration"] == "interval 180 days"
    # the two models read different versions, and their data differ
    assert {p.rsplit("/", 1)[-1]: v for p, v in v1.data["table_versions"].items()} == \
        {"candles": 0, "indicators": 0}
    assert {p.rsplit("/", 1)[-1]: v for p, v in v2.data["table_versions"].items()} == \
        {"candles": 1, "indicators": 1}
    assert len(v1.data["frame_digest"]) == 64
    assert v1.data["frame_digest"] != v2.data["frame_digest"]
    assert v1.data["dataset_digest"] != v2.data["dataset_digest"]

    again1 = reproduce(_model(v1), store=history.store, tracking_uri=mlflow_server, refit=True)
    again2 = reproduce(_model(v2), store=history.store, tracking_uri=mlflow_server)
    assert again1.matches and again2.matches, "\n".join(again1.lines() + again2.lines())
    digests = {c.what: c.rebuilt for c in again1.digests}
    assert digests == {"training set": v1.data["frame_digest"],
                       "labelled dataset": v1.data["dataset_digest"]}
    assert {c.what: c.rebuilt for c in again2.digests}["training set"] == \
        v2.data["frame_digest"]
    # the refit with the logged settings and seed scores exactly what the run logged
    assert again1.scores and all(s.same for s in again1.scores)
    assert {s.metric: s.refit for s in again1.scores}["test_roc_auc"] == \
        v1.metrics["test_roc_auc"]

    # independently of the digests: version 1's set holds the removed trade's volume in its
    # candle, version 2's does not; version 1's equals what delta-rs reads at version 0
    volume = float(history.removed["volume"])
    old, new = (_removed_minute_volume(r.frame, history.removed) for r in (again1, again2))
    assert old - new == pytest.approx(volume, abs=1e-9)
    table_v0 = DeltaTable(history.table("candles"), version=0).to_pandas()
    end_ms = (int(float(history.removed["time"]) * 1000) // MINUTE + 1) * MINUTE
    candle = table_v0[(table_v0["pair"] == "ETH/USD") & (table_v0["window_end_ms"] == end_ms)]
    assert float(candle["volume"].iloc[0]) == old
    # the latest tables give version 2's set
    latest = training_set("markets_direction_v1", start=DAY.isoformat(), end=NEXT.isoformat(),
                          pairs=PAIRS, store=history.store)
    assert latest.record.frame_digest == v2.data["frame_digest"]

    # the command prints the comparison and exits 0
    done = CliRunner().invoke(train_app, ["reproduce", "--model", _model(v1), "--repo",
                                          str(history.repo), "--tracking-uri", mlflow_server])
    assert done.exit_code == 0, done.output
    assert v1.data["frame_digest"] in done.output and "reproduced: yes" in done.output


def test_optimize_keeps_old_versions_and_vacuum_within_retention_only_then_refused_clearly(
        history: History, mlflow_server: str) -> None:
    # a backfill of the day before (the input's first half day) adds a file to the same
    # partitions (pair, duration, month: one file each per write), for OPTIMIZE to compact
    spark = spark_session("braid-tests", master="local[2]", shuffle_partitions=4)
    added = _backfill(spark, history.inputs, history.root, start=DAY - timedelta(days=1), end=DAY)
    assert (added["candles"], added["indicators"]) == (2, 2)  # a commit after versions 0, 1
    compacted = {name: optimize(history.table(name))[1] for name in ("candles", "indicators")}
    assert compacted == {"candles": 2, "indicators": 2}  # two files each, replaced by one
    current = training_set("markets_direction_v1", start=DAY.isoformat(), end=NEXT.isoformat(),
                           pairs=PAIRS, store=history.store).record.frame_digest
    for result in (history.v1, history.v2):
        again = reproduce(_model(result), store=history.store, tracking_uri=mlflow_server)
        assert again.matches, "\n".join(again.lines())

    # a maintenance run with the configured (long) retention deletes nothing yet
    long = TableRetention.parse("1h", "180d")
    assert vacuum(history.table("candles"), long) == 0
    assert reproduce(_model(history.v1), store=history.store,
                     tracking_uri=mlflow_server).matches
    time.sleep(1.5)  # past the one-second retention
    for name in ("candles", "indicators"):
        assert vacuum(history.table(name), SHORT) > 0

    with pytest.raises(TableVersionGone) as gone:
        reproduce(_model(history.v1), store=history.store, tracking_uri=mlflow_server)
    message = str(gone.value)
    assert re.search(r"offline table \S+/(candles|indicators) no longer holds version 0: \d+ of "
                     r"its \d+ data files were removed \(VACUUM\)", message), message
    assert "delta.deletedFileRetentionDuration = interval 1 seconds" in message
    assert "\n" not in message
    done = CliRunner().invoke(train_app, ["reproduce", "--model", _model(history.v1), "--repo",
                                          str(history.repo), "--tracking-uri", mlflow_server])
    assert done.exit_code == 2
    assert done.output.startswith("braid train reproduce: offline table ")
    assert "no longer holds version 0" in done.output
    with pytest.raises(TableVersionGone, match=r"has no version 99 \(its versions run to \d+\)"):
        training_set("markets_direction_v1", start=DAY.isoformat(), end=NEXT.isoformat(),
                     pairs=PAIRS, store=history.store,
                     versions={history.table("candles"): 99, history.table("indicators"): 0})
    # the latest version still reads (VACUUM never deletes its files)
    latest = training_set("markets_direction_v1", start=DAY.isoformat(), end=NEXT.isoformat(),
                          pairs=PAIRS, store=history.store)
    assert latest.record.frame_digest == current


def test_a_sensors_model_is_rebuilt_from_its_simulator_seed_and_refit_to_the_same_scores(
        mlflow_server: str) -> None:
    result = train_sensors("simulator", clients=20, minutes=60, seed=7,
                           tracking_uri=mlflow_server, settings=QUICK)
    assert result.data["seed"] == 7 and len(result.data["dataset_digest"]) == 64
    again = reproduce(f"{MODEL_NAMES['sensors']}/{result.version}", tracking_uri=mlflow_server,
                      refit=True)
    assert again.matches, "\n".join(again.lines())
    assert [c.rebuilt for c in again.digests] == [result.data["dataset_digest"]]
    assert len(again.frame) == result.data["rows"]
    assert {s.metric: s.refit for s in again.scores}["test_roc_auc"] == \
        result.metrics["test_roc_auc"]

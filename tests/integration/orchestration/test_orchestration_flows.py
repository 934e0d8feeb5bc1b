"""The flows run for real (Prefect's test harness: a temporary server) on Delta tables of real
2018 Kraken candles: consistency fails until materialize loads the online store, then matches
100%; re-runs give the same result; drift reports the PSI of the training set's features."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from feast import FeatureStore, FileSource

from orchestration.errors import FlowInputError
from orchestration.flows.consistency import ConsistencyBelowThreshold, consistency
from orchestration.flows.drift import drift
from orchestration.flows.maintenance import offline_maintenance
from orchestration.flows.materialize import materialize
from tests.support.psi_reference import independent_psi, minute_values

pytestmark = pytest.mark.integration

FIRST, END = date(2018, 5, 8), date(2018, 5, 11)  # the tables hold 2018-05-08..10


def test_consistency_fails_until_materialize_loads_the_online_store_then_matches_fully(
        prefect_harness: None, markets_repo: tuple[Path, FeatureStore]) -> None:
    repo, store = markets_repo
    with pytest.raises(ConsistencyBelowThreshold,
                       match=r"markets match rate 0\.000000% over 2018-05-08\.\.2018-05-11 is "
                             r"below 100\.000000%"):
        consistency(start=FIRST, end=END, threshold=1.0, repo=str(repo))

    runs = [materialize(pipeline="markets", start=datetime(2018, 5, 8), end=datetime(2018, 5, 11),
                        repo=str(repo)) for _ in range(2)]
    tables = {Path(path).name: version for path, version in runs[0].items()}
    assert tables == {"candles": 0, "indicators": 0}  # the Delta versions it read, logged
    assert runs[1] == runs[0]
    online = store.get_online_features(["candles_1m:close", "candles_1m:window_end_ms"],
                                       [{"pair": "XBT/USD"}]).to_dict()
    # the last candle of the range: 23:59-00:00 on 2018-05-10 (its event time: the window end)
    assert online["window_end_ms"] == [int(datetime(2018, 5, 11, tzinfo=UTC).timestamp() * 1000)]
    candles = DeltaTable(next(p for p in runs[0] if p.endswith("candles"))).to_pandas()
    last = candles[(candles.pair == "XBT/USD") & (candles.window_ms == 60_000)].sort_values(
        "window_end_ms").iloc[-1]
    assert online["close"] == [last.close] and last.window_end_ms == online["window_end_ms"][0]

    assert consistency(start=FIRST, end=END, threshold=1.0, repo=str(repo)) == 1.0
    assert consistency(start=FIRST, end=END, threshold=1.0, repo=str(repo)) == 1.0


def test_a_flow_given_bad_input_fails_naming_it(prefect_harness: None,
                                               markets_repo: tuple[Path, FeatureStore]) -> None:
    repo, _ = markets_repo
    with pytest.raises(FlowInputError, match="unknown pipeline 'bitcoin'"):
        materialize(pipeline="bitcoin", repo=str(repo))
    with pytest.raises(FlowInputError, match=r"consistency of markets 2017-01-01\.\.2017-01-02"):
        consistency(start=date(2017, 1, 1), end=date(2017, 1, 2), repo=str(repo / "absent"))


def test_drift_is_the_psi_of_the_last_day_against_the_days_before_per_feature(
        prefect_harness: None, markets_repo: tuple[Path, FeatureStore]) -> None:
    repo, store = markets_repo
    values = drift(pipeline="markets", day=date(2018, 5, 10), reference_days=2,
                   keys=["XBT/USD"], repo=str(repo))
    service = store.get_feature_service("markets_direction_v1")
    features = [f"{p.name}__{f.name}" for p in service.feature_view_projections
                for f in p.features]
    assert len(features) > 20 and set(values) == set(features)
    assert all(np.isfinite(v) and v >= 0 for v in values.values())
    # each recomputed apart from the flow: the day's and the two days before's rows of the
    # view's Delta table, read with delta-rs, through a PSI written with pandas
    for feature in ("candles_1m__close", "candles_1m__volume", "indicators_1m__rsi_14",
                    "indicators_1m__atr_14"):
        view, column = feature.split("__")
        source = store.get_feature_view(view).batch_source
        assert isinstance(source, FileSource)
        table = str(source.path)
        expected = independent_psi(
            minute_values(table, "XBT/USD", column, "2018-05-08", "2018-05-10"),
            minute_values(table, "XBT/USD", column, "2018-05-10", "2018-05-11"))
        assert values[feature] == pytest.approx(expected, abs=1e-12), feature


def test_offline_maintenance_compacts_and_vacuums_only_what_the_retention_lets_go(
        prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = str(tmp_path / "candles")
    for value in (1, 2, 3):  # three commits, three files in one partition
        write_deltalake(uri, pa.table({"day": ["2018-05-09"], "value": [value]}),
                        partition_by=["day"], mode="append")
    monkeypatch.setenv("BRAID_DELTA_DELETED_FILE_RETENTION", "1h")
    (first,) = offline_maintenance(tables=[uri])
    assert (first["files_compacted"], first["files_added"], first["files_deleted"]) == (3, 1, 0)
    assert first["retention"]["delta.deletedFileRetentionDuration"] == "interval 1 hours"
    assert DeltaTable(uri).metadata().configuration["delta.deletedFileRetentionDuration"] == \
        "interval 1 hours"
    # the version before OPTIMIZE still reads its own three files
    assert sorted(DeltaTable(uri, version=2).to_pyarrow_table()["value"].to_pylist()) == [1, 2, 3]

    monkeypatch.setenv("BRAID_DELTA_DELETED_FILE_RETENTION", "1s")
    time.sleep(1.1)
    (second,) = offline_maintenance(tables=[uri], optimize=False)
    assert second["optimized_version"] is None and second["files_deleted"] == 3
    assert sorted(DeltaTable(uri).to_pyarrow_table()["value"].to_pylist()) == [1, 2, 3]

"""Training sets are point-in-time correct and record what they read."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from feast import FeatureStore

from features.indicators import INDICATOR_COLUMNS
from serving.store import ServingError
from training.training_sets import training_set

pytestmark = pytest.mark.integration

MINUTE = 60_000


def _minute_rows(table: pa.Table, pair: str) -> pd.DataFrame:
    mask = pc.and_(pc.equal(table["window_ms"], MINUTE), pc.equal(table["pair"], pair))
    return table.filter(mask).to_pandas().sort_values("window_end_ms").reset_index(drop=True)


def test_a_row_never_gets_a_value_from_after_its_timestamp_when_later_candles_exist(
        feast_store: FeatureStore, market_tables: tuple[pa.Table, pa.Table]) -> None:
    _, indicators = market_tables
    rows = _minute_rows(indicators, "XBT/USD")
    # Entity times strictly inside candles, each with many later candles in the table: the
    # candle that is still open at that time (it ends later) must not be used.
    picks = rows.iloc[[900, 1500, 2500]]
    times = [datetime.fromtimestamp((end - 1) / 1000, UTC) for end in picks["window_end_ms"]]
    entity = pd.DataFrame({"pair": ["XBT/USD"] * 3, "event_timestamp": times})
    got = training_set("markets_direction_v1", entity_df=entity, store=feast_store).frame
    for (_, row), at in zip(got.iterrows(), times, strict=True):
        at_ms = int(at.timestamp() * 1000)
        before = rows[rows["window_end_ms"] <= at_ms].iloc[-1]  # the latest closed candle
        # the service's window bounds come from the candle view (no name twice in a service)
        assert row["candles_1m__window_end_ms"] == before["window_end_ms"] <= at_ms
        assert row["candles_1m__window_end_ms"] < rows[rows["window_end_ms"] > at_ms]\
            ["window_end_ms"].min()
        for column in INDICATOR_COLUMNS:
            assert np.isclose(row[f"indicators_1m__{column}"], before[column],
                              rtol=0, atol=1e-9, equal_nan=True), column


def test_a_time_range_gives_one_row_per_candle_with_that_candles_values_and_a_record(
        feast_store: FeatureStore, market_tables: tuple[pa.Table, pa.Table],
        offline_root: object) -> None:
    candles, indicators = market_tables
    rows = _minute_rows(indicators, "ETH/USD")
    start_ms, end_ms = int(rows["window_end_ms"].iloc[1000]), int(rows["window_end_ms"].iloc[1100])
    start = datetime.fromtimestamp(start_ms / 1000, UTC)
    end = datetime.fromtimestamp(end_ms / 1000, UTC)
    result = training_set("markets_direction_v1", start=start, end=end, pairs=["ETH/USD"],
                          store=feast_store)
    frame, record = result.frame, result.record
    expected = rows[(rows["window_end_ms"] >= start_ms) & (rows["window_end_ms"] < end_ms)]
    assert len(frame) == len(expected) == 100
    assert frame["candles_1m__window_end_ms"].tolist() == expected["window_end_ms"].tolist()
    assert np.allclose(frame["indicators_1m__rsi_14"], expected["rsi_14"], atol=1e-9,
                       equal_nan=True)
    closes = _minute_rows(candles, "ETH/USD").set_index("window_end_ms")["close"]
    assert frame["candles_1m__close"].tolist() == closes.loc[expected["window_end_ms"]].tolist()
    assert record.feature_service == "markets_direction_v1"
    assert record.entity_rows == 100
    assert len(record.entity_digest) == 64
    versions = {path.rsplit("/", 1)[-1]: v for path, v in record.table_versions.items()}
    assert versions == {"candles": DeltaTable(f"{offline_root}/candles").version(),
                        "indicators": DeltaTable(f"{offline_root}/indicators").version()}
    assert {f"indicators_1m__{c}" for c in INDICATOR_COLUMNS} <= set(record.features)
    again = training_set("markets_direction_v1", start=start, end=end, pairs=["ETH/USD"],
                         store=feast_store)
    assert again.record.entity_digest == record.entity_digest


def test_unknown_service_and_empty_range_are_one_clear_error(feast_store: FeatureStore) -> None:
    with pytest.raises(ServingError, match="feature service 'nope' does not exist"):
        training_set("nope", start="2018-05-01", end="2018-05-02", store=feast_store)
    with pytest.raises(ServingError, match="no rows of candles_1m between"):
        training_set("markets_direction_v1", start="2030-01-01", end="2030-01-02",
                     pairs=["XBT/USD"], store=feast_store)


def test_the_asof_join_returns_exactly_what_feasts_own_point_in_time_join_returns(
        feast_store: FeatureStore, market_tables: tuple[pa.Table, pa.Table]) -> None:
    ends = _minute_rows(market_tables[1], "XBT/USD")["window_end_ms"].to_numpy()
    rng = np.random.default_rng(11)
    n = 2_000
    ms = rng.integers(ends.min() - 600_000, ends.max() + 600_000, n)
    ms[:300] = rng.choice(ends, 300)  # exactly at a candle's end: that candle is known
    ms[300:400] = rng.choice(ends, 100) + 2 * MINUTE  # exactly at the TTL's edge: still fresh
    ms[400:500] = rng.choice(ends, 100) + 2 * MINUTE + 1  # 1 ms past it: stale unless newer
    micros = ms * 1000 + np.where(np.arange(n) >= 1_000, rng.integers(0, 1000, n), 0)
    entity = pd.DataFrame({
        "pair": rng.choice(["XBT/USD", "ETH/USD", "NOT/APAIR"], n),
        "event_timestamp": pd.to_datetime(micros, unit="us", utc=True)})
    entity = pd.concat([entity, entity.iloc[:5]], ignore_index=True)  # duplicated rows stay
    got = training_set("markets_direction_v1", entity_df=entity, store=feast_store).frame
    reference = feast_store.get_historical_features(
        entity_df=entity, features=feast_store.get_feature_service("markets_direction_v1"),
        full_feature_names=True).to_df()
    order = ["pair", "event_timestamp", "candles_1m__window_end_ms"]
    reference = reference.sort_values(order).reset_index(drop=True)
    pd.testing.assert_frame_equal(got.sort_values(order).reset_index(drop=True), reference)
    found = got["candles_1m__window_end_ms"].notna()
    assert 0 < found.sum() < n  # some rows found a candle, some (stale, unknown pair) did not
    entity_ms = got["event_timestamp"].astype("int64") // 1000
    assert (got.loc[found, "candles_1m__window_end_ms"] <= entity_ms[found]).all()

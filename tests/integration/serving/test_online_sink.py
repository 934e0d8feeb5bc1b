"""The online sink writes the newest row per pair, never an older one, and survives a replay."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from features.indicators import INDICATOR_COLUMNS
from serving.store import feast_redis_connection
from streaming.runtime.records import InputBatch
from streaming.sinks.online_store import (
    OnlineSinkOperator,
    OnlineWriter,
    RedisBulkWriter,
    online_writer,
)
from tests.integration.serving.offline_tables import local_repo

pytestmark = pytest.mark.integration

TOPIC = "technical_indicators"
KINDS = {TOPIC: "indicators", "FA": "sensor_feature", "SX": "sensor_reading:SX"}


def _messages(indicators: pa.Table, pair: str, count: int) -> list[dict[str, object]]:
    mask = pc.and_(pc.equal(indicators["window_ms"], 60_000), pc.equal(indicators["pair"], pair))
    rows = indicators.filter(mask).slice(0, count).to_pylist()
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in rows]


def _batch(values: list[bytes], first_offset: int) -> InputBatch:
    n = len(values)
    return InputBatch(TOPIC, 0, np.arange(first_offset, first_offset + n, dtype=np.int64),
                      [b"k"] * n, list(values))


def _online(writer: OnlineWriter, pair: str) -> dict[str, list[object]]:
    return writer.store.get_online_features(
        features=[f"indicators_1m:{c}" for c in ("window_start_ms", *INDICATOR_COLUMNS)],
        entity_rows=[{"pair": pair}]).to_dict()


def test_newest_row_wins_older_rows_never_overwrite_and_bad_rows_go_to_dead_letters(
        tmp_path: Path, offline_root: Path, market_tables: tuple[pa.Table, pa.Table]) -> None:
    store = local_repo(tmp_path / "repo", offline_root)
    rows = _messages(market_tables[1], "XBT/USD", 800)
    encoded = [orjson.dumps(r) for r in rows]
    operator = OnlineSinkOperator(OnlineWriter(store), KINDS)
    for start in range(0, 700, 100):
        assert operator.process(_batch(encoded[start:start + 100], start), 0).dead_letters == []
    newest = rows[699]
    online = _online(operator.writer, "XBT/USD")
    assert online["window_start_ms"] == [newest["window_start_ms"]]
    for column in INDICATOR_COLUMNS:
        assert online[column][0] == pytest.approx(newest[column], abs=1e-9, nan_ok=True)
    # an older row (a late duplicate) does not replace the newer one
    older = operator.process(_batch([encoded[10]], 700), 0)
    assert older.dead_letters == []
    assert _online(operator.writer, "XBT/USD")["window_start_ms"] == [newest["window_start_ms"]]
    bad = dict(rows[750], window_ms=300_000)
    letters = operator.process(_batch([b"{not json", orjson.dumps(bad)], 701), 0).dead_letters
    assert [d.reason.split(" (")[0] for d in letters] == [
        "decode: not JSON", "online-sink: no feature view indicators_5m"]
    assert [d.offset for d in letters] == [701, 702]
    assert operator.commit_offset(TOPIC) == 703


def test_a_replay_after_a_crash_leaves_the_store_as_an_uninterrupted_run(
        tmp_path: Path, offline_root: Path, market_tables: tuple[pa.Table, pa.Table]) -> None:
    rows = _messages(market_tables[1], "ETH/USD", 600)
    encoded = [orjson.dumps(r) for r in rows]
    straight = local_repo(tmp_path / "straight", offline_root)
    OnlineSinkOperator(OnlineWriter(straight), KINDS).process(
        _batch(encoded, 0), 0)
    crashed = local_repo(tmp_path / "crashed", offline_root)
    first = OnlineSinkOperator(OnlineWriter(crashed), KINDS)
    first.process(_batch(encoded[:450], 0), 0)
    snapshot = {"next_offset": {TOPIC: 300}}  # the last checkpoint was older than the writes
    restarted = OnlineSinkOperator(OnlineWriter(crashed), KINDS)
    restarted.restore(snapshot)
    restarted.process(_batch(encoded[300:], 300), 0)
    assert _online(restarted.writer, "ETH/USD") == _online(OnlineWriter(straight), "ETH/USD")
    assert _online(restarted.writer, "ETH/USD")["window_start_ms"] == [rows[-1]["window_start_ms"]]


def test_sensor_features_and_readings_reach_their_views_newest_reading_first(
        tmp_path: Path, offline_root: Path) -> None:
    store = local_repo(tmp_path / "repo", offline_root)
    operator = OnlineSinkOperator(OnlineWriter(store), KINDS)

    def fa(ts: int, value: float, bin_: int) -> bytes:
        return orjson.dumps({"v": 1, "client": "c1", "feature": "FA", "timestamp_ms": ts,
                             "value": value, "bin": bin_, "edges_version": "e1",
                             "window_ms": 600_000, "count": 3})

    batch: list[bytes | None] = [fa(1_700_000_000_500, 0.25, 2), fa(1_700_000_000_900, 0.75, 7),
             fa(1_700_000_000_100, 0.5, 5)]  # the last arrived is the oldest
    sensors = InputBatch("FA", 3, np.arange(3, dtype=np.int64), [b"c1"] * 3, batch)
    assert operator.process(sensors, 0).dead_letters == []
    readings = InputBatch("SX", 3, np.arange(2, dtype=np.int64), [b"c1"] * 2, [
        orjson.dumps({"v": 1, "client": "c1", "timestamp_ms": 1_700_000_000_001, "value": 4}),
        orjson.dumps({"v": 1, "client": "c1", "timestamp_ms": 1_700_000_000_002, "value": 2.5})])
    letters = operator.process(readings, 0).dead_letters
    assert [d.reason for d in letters] == ["schema: SX must be an integer category"]
    # a later batch with a row 1 ms newer than the stored one is written (ms, not s, precision)
    operator.process(InputBatch("FA", 3, np.array([3]), [b"c1"], [fa(1_700_000_000_901, 1.5, 9)]),
                     0)
    online = store.get_online_features(
        features=["sensor_fa:FA", "sensor_fa:FA_bin", "sensor_sx:SX"],
        entity_rows=[{"client": "c1"}]).to_dict()
    assert online == {"client": ["c1"], "FA": [1.5], "FA_bin": [9], "SX": [4]}
    operator.process(InputBatch("FA", 3, np.array([4]), [b"c1"], [fa(1_700_000_000_900, 0.0, 0)]),
                     0)
    assert store.get_online_features(features=["sensor_fa:FA"],
                                     entity_rows=[{"client": "c1"}]).to_dict()["FA"] == [1.5]


def test_on_redis_the_sink_writes_the_newest_row_and_a_replay_changes_nothing(
        tmp_path: Path, offline_root: Path, market_tables: tuple[pa.Table, pa.Table],
        redis_url: str) -> None:
    store = local_repo(tmp_path / "redis", offline_root, feast_redis_connection(redis_url))
    rows = _messages(market_tables[1], "XBT/USD", 700)
    encoded = [orjson.dumps(r) for r in rows]
    writer = online_writer(store)
    assert isinstance(writer, RedisBulkWriter)  # Feast's Redis format, written in bulk
    OnlineSinkOperator(writer, KINDS).process(_batch(encoded[:650], 0), 0)
    before = _online(OnlineWriter(store), "XBT/USD")
    assert before["window_start_ms"] == [rows[649]["window_start_ms"]]
    assert before["rsi_14"][0] == pytest.approx(rows[649]["rsi_14"], abs=1e-9)
    restarted = OnlineSinkOperator(online_writer(store), KINDS)  # a new process
    restarted.process(_batch(encoded[:600], 0), 0)  # replay of older rows
    assert _online(restarted.writer, "XBT/USD") == before
    assert restarted.writer.rows_written == 0
    restarted.process(_batch(encoded[600:], 600), 0)
    assert _online(restarted.writer, "XBT/USD")["window_start_ms"] == [rows[-1]["window_start_ms"]]


def _fa(ts: int, value: float, bin_: int, client: str = "c1") -> bytes:
    return orjson.dumps({"v": 1, "client": client, "feature": "FA", "timestamp_ms": ts,
                         "value": value, "bin": bin_, "edges_version": "e1",
                         "window_ms": 600_000, "count": 3})


@pytest.mark.parametrize("online", ["sqlite", "redis"])
def test_a_correction_of_the_latest_reading_reaches_the_store_and_a_replay_does_not_undo_it(
        tmp_path: Path, offline_root: Path, redis_url: str, online: str) -> None:
    """The window processor corrects a reading's features with a later message for the same
    (client, feature, reading time): the store takes it (the later log position wins at an equal
    event time), in one batch or across batches, and replaying the older message afterwards
    leaves the correction. SX readings at one time keep the first, as the batch layer does."""
    store = local_repo(tmp_path / online, offline_root,
                       feast_redis_connection(redis_url) if online == "redis" else None)
    t = 1_700_000_000_500
    operator = OnlineSinkOperator(online_writer(store), KINDS)

    def fa_online() -> list[object]:
        return store.get_online_features(features=["sensor_fa:FA", "sensor_fa:FA_bin"],
                                         entity_rows=[{"client": "c1"}, {"client": "c2"}]
                                         ).to_dict()["FA"]

    first = [_fa(t, 0.25, 2), _fa(t, 0.5, 5, "c2"), _fa(t, 0.75, 7, "c2")]  # c2: corrected
    operator.process(InputBatch("FA", 3, np.arange(3, dtype=np.int64), [b"k"] * 3,
                                list[bytes | None](first)), 0)
    assert fa_online() == [0.25, 0.75]
    operator.process(InputBatch("FA", 3, np.array([3]), [b"k"], [_fa(t, 0.375, 3)]), 0)
    assert fa_online() == [0.375, 0.75]  # c1's latest reading corrected in a later batch
    # a new sink process replays offsets 0..2: older positions at the same time, kept out
    replay = OnlineSinkOperator(online_writer(store), KINDS)
    for offset, message in enumerate(first):
        replay.process(InputBatch("FA", 3, np.array([offset]), [b"k"], [message]), 0)
        if online == "redis":  # Redis keeps each row's position: not even for a moment
            assert fa_online() == [0.375, 0.75]
    replay.process(InputBatch("FA", 3, np.array([3]), [b"k"], [_fa(t, 0.375, 3)]), 0)
    assert fa_online() == [0.375, 0.75]
    if online == "redis":
        assert replay.writer.rows_written == 0
    # raw SX readings sharing a time: the first stays (the offline sensor_readings rule)
    sx = [orjson.dumps({"v": 1, "client": "c1", "timestamp_ms": t, "value": v}) for v in (4, 6)]
    operator.process(InputBatch("SX", 3, np.arange(2, dtype=np.int64), [b"k"] * 2,
                                list[bytes | None](sx)), 0)
    operator.process(InputBatch("SX", 3, np.array([2]), [b"k"], [sx[1]]), 0)
    assert store.get_online_features(features=["sensor_sx:SX"], entity_rows=[{"client": "c1"}]
                                     ).to_dict()["SX"] == [4]

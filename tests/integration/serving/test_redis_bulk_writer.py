"""The bulk Redis writer writes exactly what Feast's own writer writes, newest row first."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import cast

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import redis
from feast import FeatureStore

from serving.store import feast_redis_connection
from streaming.runtime.records import InputBatch
from streaming.sinks.online_store import (
    OnlineRow,
    OnlineSinkOperator,
    OnlineWriter,
    RedisBulkWriter,
    online_writer,
)
from tests.integration.serving.offline_tables import local_repo

pytestmark = pytest.mark.integration

TOPIC = "technical_indicators"


def _rows(indicators: pa.Table, count: int) -> list[OnlineRow]:
    """`count` one-minute rows of each pair around the longest warm-up (some NaN: not warm)."""
    rows = []
    for pair in ("XBT/USD", "ETH/USD"):
        mask = pc.and_(pc.equal(indicators["window_ms"], 60_000),
                       pc.equal(indicators["pair"], pair))
        for r in indicators.filter(mask).slice(650, count).to_pylist():
            values = {k: v for k, v in r.items() if k not in ("pair", "window_ms")}
            rows.append(OnlineRow("indicators_1m", "pair", pair, r["window_end_ms"], values))
    return rows


def _hashes(url: str, project: str) -> dict[bytes, dict[bytes, bytes]]:
    client = redis.Redis.from_url(url)
    suffix = project.encode()
    return {key[:-len(suffix)]: cast(dict[bytes, bytes], client.hgetall(key))
            for key in client.scan_iter() if key.endswith(suffix)}


def _read(store: FeatureStore, view: str, entities: list[dict[str, str]],
          features: list[str]) -> dict[str, list[object]]:
    return store.get_online_features(features=[f"{view}:{f}" for f in features],
                                     entity_rows=entities).to_dict()


def _stamps(store: FeatureStore, view: str, join_key: str, entities: list[str]) -> list[object]:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    keys = [EntityKey(join_keys=[join_key], entity_values=[Value(string_val=e)])
            for e in entities]
    found = store._get_provider().online_read(store.config, store.get_feature_view(view), keys)
    return [stamp for stamp, _ in found]


def test_bulk_writes_are_byte_for_byte_feasts_and_read_back_the_same(
        tmp_path: Path, offline_root: Path, market_tables: tuple[pa.Table, pa.Table],
        redis_url: str) -> None:
    connection = feast_redis_connection(redis_url)
    feast_store = local_repo(tmp_path / "feast", offline_root, connection)
    bulk_store = local_repo(tmp_path / "bulk", offline_root, connection)
    rows = _rows(market_tables[1], 40)  # NaN warm-up values (null) and warmed-up ones
    sensors = [OnlineRow("sensor_fa", "client", "c1", 1_700_000_000_123,
                         {"FA": 0.5, "FA_bin": -3}),
               OnlineRow("sensor_fa", "client", "c2", 999, {"FA": math.nan, "FA_bin": 0}),
               OnlineRow("sensor_sx", "client", "c1", 1_700_000_000_000, {"SX": 7})]
    reference = OnlineWriter(feast_store)
    bulk = RedisBulkWriter(bulk_store, chunk_rows=7)  # several EVALSHAs per pipeline
    for writer in (reference, bulk):
        for i in range(0, len(rows), 20):  # one row per pair per call, newer each time
            by_pair = {r.entity: r for r in rows[i:i + 20]}
            assert writer.write("indicators_1m", list(by_pair.values())) == []
        for view in ("sensor_fa", "sensor_sx"):
            assert writer.write(view, [r for r in sensors if r.view == view]) == []
    written = _hashes(redis_url, bulk_store.config.project)
    assert written == _hashes(redis_url, feast_store.config.project)
    assert len(written) == 4  # two pairs, two clients
    indicators = [f.name for f in bulk_store.get_feature_view("indicators_1m").features]
    pairs = [{"pair": "XBT/USD"}, {"pair": "ETH/USD"}]
    got = _read(bulk_store, "indicators_1m", pairs, indicators)
    assert got == _read(feast_store, "indicators_1m", pairs, indicators)
    newest = {r.entity: r for r in rows}
    assert got["window_end_ms"] == [newest["XBT/USD"].event_ms, newest["ETH/USD"].event_ms]
    assert got["rsi_14"][0] == newest["XBT/USD"].values["rsi_14"]
    # the rows compared above include NaN (not warmed up) values: written as Feast's null
    assert any(isinstance(v, float) and math.isnan(v) for r in rows for v in r.values.values())
    clients = [{"client": "c1"}, {"client": "c2"}]
    assert _read(bulk_store, "sensor_fa", clients, ["FA", "FA_bin"]) == {
        "client": ["c1", "c2"], "FA": [0.5, None], "FA_bin": [-3, 0]}
    for view, key, entities in (("indicators_1m", "pair", ["XBT/USD", "ETH/USD"]),
                                ("sensor_fa", "client", ["c1", "c2"])):
        assert _stamps(bulk_store, view, key, entities) == \
            _stamps(feast_store, view, key, entities)


def test_redis_keeps_the_newest_row_whoever_writes_and_a_replay_writes_nothing(
        tmp_path: Path, offline_root: Path, redis_url: str) -> None:
    store = local_repo(tmp_path / "newest", offline_root, feast_redis_connection(redis_url))

    def fa(ms: int, value: float) -> OnlineRow:
        return OnlineRow("sensor_fa", "client", "c9", ms, {"FA": value, "FA_bin": 1})

    first = RedisBulkWriter(store)
    first.write("sensor_fa", [fa(2_000, 2.0)])
    second = RedisBulkWriter(store)  # another process: no memory of what the first wrote
    second.write("sensor_fa", [fa(1_999, 1.0)])  # 1 ms older
    second.write("sensor_fa", [fa(2_000, 9.0)])  # same instant: not newer, kept out
    assert second.rows_written == 0
    assert _read(store, "sensor_fa", [{"client": "c9"}], ["FA"])["FA"] == [2.0]
    second.write("sensor_fa", [fa(2_001, 3.0)])
    assert second.rows_written == 1
    assert _read(store, "sensor_fa", [{"client": "c9"}], ["FA"])["FA"] == [3.0]
    # Feast's own writer agrees about what is newer: it does not overwrite the bulk row either
    OnlineWriter(store).write("sensor_fa", [fa(2_000, 5.0)])
    assert _read(store, "sensor_fa", [{"client": "c9"}], ["FA"])["FA"] == [3.0]


def test_at_an_equal_event_time_the_later_log_position_wins_in_redis_and_never_the_older(
        tmp_path: Path, offline_root: Path, redis_url: str) -> None:
    store = local_repo(tmp_path / "positions", offline_root, feast_redis_connection(redis_url))

    def fa(ms: int, value: float, position: int = -1) -> OnlineRow:
        return OnlineRow("sensor_fa", "client", "c9", ms, {"FA": value, "FA_bin": 1}, position)

    def stored() -> tuple[object, bytes | None]:
        row = next(iter(_hashes(redis_url, store.config.project).values()))
        return (_read(store, "sensor_fa", [{"client": "c9"}], ["FA"])["FA"][0],
                row.get(b"_pos:sensor_fa"))

    first = RedisBulkWriter(store)
    first.write("sensor_fa", [fa(2_000, 2.0, position=10)])
    assert stored() == (2.0, b"00000000000000000010")
    first.write("sensor_fa", [fa(2_000, 5.0, position=11)])  # a correction: same time, later
    assert stored() == (5.0, b"00000000000000000011")
    assert first.rows_written == 2
    second = RedisBulkWriter(store)  # another process replays: older or the same positions
    for row in (fa(2_000, 2.0, position=10), fa(2_000, 5.0, position=11),
                fa(1_999, 1.0, position=12), fa(2_000, 7.0)):  # the last: no position
        second.write("sensor_fa", [row])
        assert stored() == (5.0, b"00000000000000000011")
    assert second.rows_written == 0
    # positions compare as numbers: 100 is later than 99 (fixed-width strings)
    second.write("sensor_fa", [fa(2_001, 3.0, position=99)])
    second.write("sensor_fa", [fa(2_001, 4.0, position=100)])
    assert stored() == (4.0, b"00000000000000000100")
    # a row without a position at a later time is written and clears the stored position
    second.write("sensor_fa", [fa(2_002, 6.0)])
    assert stored() == (6.0, None)
    # Feast reads the event time as written, the position field aside
    stamp = _stamps(store, "sensor_fa", "client", ["c9"])[0]
    assert isinstance(stamp, datetime) and stamp.timestamp() == 2.002


def test_the_sink_on_redis_dead_letters_rows_that_do_not_fit_their_types(
        tmp_path: Path, offline_root: Path, market_tables: tuple[pa.Table, pa.Table],
        redis_url: str) -> None:
    store = local_repo(tmp_path / "types", offline_root, feast_redis_connection(redis_url))
    writer = online_writer(store)
    assert isinstance(writer, RedisBulkWriter)
    good = {k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in _rows(market_tables[1], 1)[0].values.items()}
    good |= {"pair": "XBT/USD", "window_ms": 60_000}
    bad = dict(good, pair="ETH/USD", window_start_ms=1.5)
    values: list[bytes | None] = [orjson.dumps(good), orjson.dumps(bad)]
    batch = InputBatch(TOPIC, 0, np.arange(2, dtype=np.int64), [b"k"] * 2, values)
    letters = OnlineSinkOperator(writer, {TOPIC: "indicators"}).process(batch, 0).dead_letters
    assert [(d.reason, d.offset) for d in letters] == [
        ("schema: window_start_ms must be an integer", 1)]
    got = _read(store, "indicators_1m", [{"pair": "XBT/USD"}, {"pair": "ETH/USD"}],
                ["window_start_ms"])
    assert got["window_start_ms"] == [good["window_start_ms"], None]


def test_a_replay_after_a_crash_leaves_redis_byte_for_byte_as_an_uninterrupted_run(
        tmp_path: Path, offline_root: Path, market_tables: tuple[pa.Table, pa.Table],
        redis_url: str) -> None:
    connection = feast_redis_connection(redis_url)
    indicators = market_tables[1]
    minute = indicators.filter(pc.equal(indicators["window_ms"], 60_000)).slice(0, 1_200)
    messages = [orjson.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                              for k, v in r.items()}) for r in minute.to_pylist()]

    def batch(start: int, end: int) -> InputBatch:
        return InputBatch(TOPIC, 0, np.arange(start, end, dtype=np.int64),
                          [b"k"] * (end - start), list(messages[start:end]))

    straight = local_repo(tmp_path / "straight", offline_root, connection)
    OnlineSinkOperator(online_writer(straight), {TOPIC: "indicators"}).process(
        batch(0, len(messages)), 0)
    crashed = local_repo(tmp_path / "crashed", offline_root, connection)
    first = OnlineSinkOperator(online_writer(crashed), {TOPIC: "indicators"})
    for start in range(0, 900, 150):  # wrote up to 900, its last checkpoint said 300: kill -9
        first.process(batch(start, start + 150), 0)
    at_crash = _hashes(redis_url, crashed.config.project)
    restarted = OnlineSinkOperator(online_writer(crashed), {TOPIC: "indicators"})
    restarted.restore({"next_offset": {TOPIC: 300}})
    for start in range(300, 900, 150):  # the replay of what was written: older, kept out
        restarted.process(batch(start, start + 150), 0)
        assert _hashes(redis_url, crashed.config.project) == at_crash
    assert restarted.writer.rows_written == 0
    for start in range(900, len(messages), 150):
        restarted.process(batch(start, min(len(messages), start + 150)), 0)
    assert restarted.writer.rows_written > 0  # rows past 900 were written after the restart
    assert _hashes(redis_url, crashed.config.project) == \
        _hashes(redis_url, straight.config.project)
    assert len(_hashes(redis_url, straight.config.project)) == len(
        set(minute["pair"].to_pylist()))

"""Hostile inputs at the online sink, on real Redis through Feast's repo (the production writer,
`RedisBulkWriter`): generated mixes of real indicator rows (2018 XBT/USD and ETH/USD, in any
order, repeated) and records that break the sink's contract (`streaming.sinks.online_rows`),
in micro-batches of any size.

(a) every invalid record is dead-lettered exactly once, with a reason, its topic, partition,
    offset, key and value; (b) no valid one is (an older row is skipped, not dead-lettered);
(c) the store holds each pair's newest valid row afterwards; (d) a later row is still written.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from feast import FeatureStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.indicators import INDICATOR_COLUMNS
from serving.store import feast_redis_connection
from streaming.runtime.records import DeadLetter, InputBatch
from streaming.sinks.online_store import OnlineSinkOperator, RedisBulkWriter, online_writer
from tests.integration.serving.offline_tables import local_repo
from tests.support.reliability_report import record_hostile
from tests.unit.reliability import strategies as s
from tests.unit.reliability.strategies import MISSING, Mutation, Raw, Wire

pytestmark = pytest.mark.integration

TOPIC = "technical_indicators"
PARTITION = 2
EXAMPLES = max(10, int(os.environ.get("BRAID_RELIABILITY_EXAMPLES", "40")) // 2)
PAIRS = ("XBT/USD", "ETH/USD")

# every one of these breaks the sink's contract for an indicator row
SINK_MUTATIONS: list[Mutation] = [
    ("missing_pair", "pair", MISSING), ("null_pair", "pair", None), ("pair_empty", "pair", ""),
    ("pair_number", "pair", 42), ("pair_object", "pair", {"a": 1}),
    ("missing_window_ms", "window_ms", MISSING), ("window_ms_zero", "window_ms", 0),
    ("window_ms_negative", "window_ms", -60_000), ("window_ms_string", "window_ms", "60000"),
    ("window_ms_bool", "window_ms", True), ("window_ms_fraction", "window_ms", 1.5),
    ("window_ms_no_view", "window_ms", 7_000),
    ("missing_window_end_ms", "window_end_ms", MISSING),
    ("window_end_ms_zero", "window_end_ms", 0), ("window_end_ms_string", "window_end_ms", "1"),
    ("close_string", "close", "1.5"), ("close_bool", "close", True), ("close_list", "close", [1]),
    ("rsi_object", "rsi_14", {"x": 1}), ("close_nan_literal", "close", Raw(b"NaN")),
    ("close_overflow_1e400", "close", Raw(b"1e400")),
    ("window_start_ms_string", "window_start_ms", "abc"),
    ("window_start_ms_beyond_int64", "window_start_ms", 2**63),
    ("window_end_ms_beyond_int64", "window_end_ms", 2**64 - 1),
    ("rsi_beyond_int64", "rsi_14", 2**63),
]


def _wire_rows(indicators: pa.Table) -> list[dict[str, Any]]:
    """Real 1-minute indicator rows of both pairs, as the indicator processor writes them."""
    rows = indicators.filter(pc.and_(pc.equal(indicators["window_ms"], 60_000),
                                     pc.is_in(indicators["pair"], pa.array(PAIRS)))).to_pylist()
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in rows[:: max(1, len(rows) // 400)]]


@pytest.fixture(scope="module")
def real_rows(market_tables: tuple[pa.Table, pa.Table]) -> list[dict[str, Any]]:
    return _wire_rows(market_tables[1])


@pytest.fixture(scope="module")
def redis_store(tmp_path_factory: pytest.TempPathFactory, offline_root: Path,
                redis_url: str) -> FeatureStore:
    return local_repo(tmp_path_factory.mktemp("hostile-sink"), offline_root,
                      feast_redis_connection(redis_url))


@st.composite
def mixes(draw: st.DrawFn, rows: list[dict[str, Any]]) -> list[Wire]:
    pick = st.sampled_from(rows)
    valid = pick.map(lambda r: s.ok("valid", r))
    hostile = st.one_of(pick.flatmap(lambda r: s.garbage(orjson.dumps(r))),
                        s.mutated(pick, SINK_MUTATIONS))
    return draw(s.sequences(valid, hostile, max_valid=40, max_hostile=25))


def _renamed(wire: Wire, prefix: str) -> Wire:
    """The record with its pair renamed `prefix + pair` (each example its own entities)."""
    if wire.value is None:
        return wire
    renamed = wire.value
    for pair in PAIRS:
        renamed = renamed.replace(orjson.dumps(pair), orjson.dumps(prefix + pair))
    row = ({**wire.row, "pair": prefix + wire.row["pair"]} if wire.row is not None else None)
    return Wire(wire.kind, renamed, wire.valid, row)


def _online(store: FeatureStore, pair: str) -> dict[str, list[Any]]:
    return store.get_online_features(
        features=[f"indicators_1m:{c}" for c in ("window_start_ms", *INDICATOR_COLUMNS)],
        entity_rows=[{"pair": pair}]).to_dict()


def test_the_online_sink_survives_hostile_indicator_rows(
        real_rows: list[dict[str, Any]], redis_store: FeatureStore) -> None:

    @given(items=mixes(real_rows), batch_size=st.integers(1, 40),
           first=st.sampled_from([0, 5, 2**40]))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(items: list[Wire], batch_size: int, first: int) -> None:
        prefix = uuid.uuid4().hex[:8] + ":"
        wires = [_renamed(w, prefix) for w in items]
        operator = OnlineSinkOperator(online_writer(redis_store), {TOPIC: "indicators"})
        assert isinstance(operator.writer, RedisBulkWriter)
        letters: list[DeadLetter] = []
        for start in range(0, len(wires), batch_size):
            chunk = wires[start:start + batch_size]
            offsets = np.arange(first + start, first + start + len(chunk), dtype=np.int64)
            batch = InputBatch(TOPIC, PARTITION, offsets, [b"key"] * len(chunk),
                               [w.value for w in chunk])
            letters += operator.process(batch, 0).dead_letters
        assert operator.commit_offset(TOPIC) == (first + len(wires) if wires else None)

        by_offset = {first + i: w for i, w in enumerate(wires)}
        seen = Counter(d.offset for d in letters)
        for d in letters:
            wire = by_offset[d.offset]
            assert not wire.valid, f"valid row dead-lettered: {d.reason}"
            assert d.reason.strip() and d.topic == TOPIC and d.partition == PARTITION
            assert d.key == b"key" and d.value == wire.value
        for offset, wire in by_offset.items():
            if not wire.valid:
                assert seen[offset] == 1, f"{wire.kind} at {offset}: {seen[offset]} letters"
        record_hostile("online_sink", [w.kind for w in wires], [d.reason for d in letters])

        # (c) each pair's newest valid row is what the store serves
        for pair in PAIRS:
            mine = [w.row for w in wires if w.valid and w.row and w.row["pair"] == prefix + pair]
            online = _online(redis_store, prefix + pair)
            if not mine:
                assert online["window_start_ms"] == [None]
                continue
            newest = max(mine, key=lambda r: r["window_end_ms"])
            assert online["window_start_ms"] == [newest["window_start_ms"]]
            for column in INDICATOR_COLUMNS:
                assert online[column][0] == pytest.approx(newest[column], abs=1e-9,
                                                          nan_ok=True), column

        # (d) a row after everything is still written
        last = {**real_rows[-1], "pair": prefix + "LATE/USD"}
        after = operator.process(InputBatch(TOPIC, PARTITION, np.array([first + len(wires)]),
                                            [b"key"], [orjson.dumps(last)]), 0)
        assert after.dead_letters == []
        assert _online(redis_store, prefix + "LATE/USD")["window_start_ms"] == [
            last["window_start_ms"]]

    run()


def test_integers_beyond_int64_are_refused_where_decoded_and_where_encoded() -> None:
    """2**63 passed JSON decoding and was written as a varint Feast reads back as another
    number (found by the test above). The sink refuses it on decoding, so the row never
    competes for "newest of its entity"; the Redis encoder refuses it too."""
    from streaming.sinks.feast_redis_format import encode_int64
    from streaming.sinks.online_rows import InvalidRow, decode_row

    row = {"pair": "XBT/USD", "window_ms": 60_000, "window_start_ms": 1, "window_end_ms": 2,
           "close": 1.0}
    assert decode_row("indicators", orjson.dumps(row)).values["window_start_ms"] == 1
    for name, value in (("window_start_ms", 2**63), ("window_end_ms", 2**64 - 1)):
        with pytest.raises(InvalidRow, match=f"{name} is beyond the 64-bit integer range"):
            decode_row("indicators", json.dumps({**row, name: value}).encode())
    assert encode_int64(2**63 - 1) and encode_int64(-(2**63))
    for value in (2**63, -(2**63) - 1):
        with pytest.raises(ValueError, match="beyond the 64-bit integer range"):
            encode_int64(value)

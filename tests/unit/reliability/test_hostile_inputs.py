"""Hostile inputs, every stream operator, no broker: generated mixes of valid and invalid wire
records (strategies.py) fed at consecutive offsets, in micro-batches of any size.

For each operator:
(a) every invalid record is dead-lettered exactly once, with a reason, its topic, partition,
    offset, key and original value;
(b) no valid record is dead-lettered (valid event times stay within grace: none is late);
(c) every valid record is reflected in the output, as computed here from the valid records;
(d) the operator keeps working: a final valid batch still produces its output.

`BRAID_RELIABILITY_EXAMPLES=500 pytest tests/unit/reliability` is the long run.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.schemas.candle import record_key
from features.schemas.window_closure import ClosureRule, WindowClosure
from features.sensors.binning import DEFAULT_EDGES
from features.sensors.model import LogisticAlertModel
from features.sensors.schemas import MAX_SZ_MAGNITUDE
from features.sensors.window_math import sensor_window
from features.windows import TumblingWindow
from streaming.processors.candles import CandleConfig, CandleOperator
from streaming.processors.indicators import IndicatorConfig, IndicatorOperator
from streaming.processors.markets_predictor import (
    MarketsPredictorOperator,
    PredictorConfig,
    PredictorGroup,
)
from streaming.processors.sensor_join import SensorJoinConfig, SensorJoinOperator
from streaming.processors.sensor_windows import SensorWindowConfig, SensorWindowOperator
from streaming.runtime.operator import PartitionOperator
from streaming.runtime.records import DeadLetter, Emission, InputBatch
from tests.support.predictor_fakes import FakeModels, FakeOnlineStore
from tests.unit.reliability import strategies as s
from tests.unit.reliability.strategies import INGEST_MS, SPAN_MS, T0, TALLY, Wire

EXAMPLES = int(os.environ.get("BRAID_RELIABILITY_EXAMPLES", "40"))
RELIABLE = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
PARTITION = 3
KEY = b"message-key"  # of a record whose entity cannot be told (garbage, broken fields)


def entity_key(topic: str, wire: Wire) -> bytes | None:
    """The Kafka key `wire` is fed with: its entity's (as producers key them) unless the wire
    says another."""
    if wire.key is not s.ENTITY_KEY:
        return wire.key
    row = wire.row
    if row is None:
        return KEY
    if topic in ("candles", "indicators"):
        return record_key(row["pair"], row["window_ms"], row["window_start_ms"]).encode()
    return str(row["pair"] if topic == "trades" else row["client"]).encode()

Tagged = tuple[str, Wire]  # (topic, record)
FIRST_OFFSETS = st.sampled_from([0, 1, 7, 2**40])
BATCH_SIZES = st.integers(1, 60)


@dataclass
class Fed:
    """What was fed: (topic, offset, record) in arrival order, and everything emitted."""

    records: list[tuple[str, int, Wire]] = field(default_factory=list)
    emission: Emission = field(default_factory=Emission)
    next_offset: dict[str, int] = field(default_factory=dict)

    def valid_rows(self) -> list[dict[str, Any]]:
        return [w.row for _, _, w in self.records if w.valid and w.row is not None]


def feed(op: PartitionOperator, items: Sequence[Tagged], first: int, batch_size: int,
         fed: Fed | None = None) -> Fed:
    """Feed `items` in arrival order: consecutive offsets per topic (from `first`), batches of
    one topic of at most `batch_size` messages, every message stamped `INGEST_MS`."""
    fed = fed or Fed()
    run: list[Tagged] = []

    def flush() -> None:
        if not run:
            return
        topic = run[0][0]
        start = fed.next_offset.get(topic, first)
        offsets = np.arange(start, start + len(run), dtype=np.int64)
        fed.next_offset[topic] = start + len(run)
        fed.records += [(topic, int(o), w) for o, (_, w) in zip(offsets, run, strict=True)]
        batch = InputBatch(topic, PARTITION, offsets, [entity_key(t, w) for t, w in run],
                           [w.value for _, w in run], np.full(len(run), INGEST_MS, dtype=np.int64))
        fed.emission.extend(op.process(batch, 0))
        run.clear()

    for item in items:
        if run and (item[0] != run[0][0] or len(run) == batch_size):
            flush()
        run.append(item)
    flush()
    return fed


def check_dead_letters(name: str, fed: Fed) -> None:
    """(a) and (b): exactly the invalid records are dead-lettered, once each, intact."""
    letters: list[DeadLetter] = fed.emission.dead_letters
    tally = TALLY[name]
    by_place = {(topic, offset): wire for topic, offset, wire in fed.records}
    seen = Counter((d.topic, d.offset) for d in letters)
    for wire in by_place.values():
        tally[f"tried:{wire.kind}"] += 1
    for letter in letters:
        tally[f"dead:{s.reason_class(letter.reason)}"] += 1
        found = by_place.get((letter.topic, letter.offset))
        assert found is not None, f"dead letter for an offset never fed: {letter.offset}"
        wire = found
        assert not wire.valid, f"valid {wire.kind} record dead-lettered: {letter.reason}"
        assert isinstance(letter.reason, str) and letter.reason.strip()
        assert letter.partition == PARTITION
        assert letter.key == entity_key(letter.topic, wire)
        assert letter.value == wire.value, f"{wire.kind}: dead letter value differs"
        if wire.key is not s.ENTITY_KEY:  # a valid record off its entity's partition
            assert letter.reason.startswith("key: "), f"{wire.kind}: {letter.reason}"
    for (topic, offset), wire in by_place.items():
        if not wire.valid:
            assert seen[(topic, offset)] == 1, (
                f"invalid {wire.kind} record at {topic}/{offset} dead-lettered "
                f"{seen[(topic, offset)]} times: {wire.value!r:.200}")


def outputs(emission: Emission) -> list[tuple[str, str, dict[str, Any]]]:
    """(topic, key, decoded value) of every output, records and batches alike."""
    out = [(r.topic, r.key, orjson.loads(r.value)) for r in emission.records]
    for b in emission.batches:
        out += [(b.topic, k, orjson.loads(v)) for k, v in zip(b.keys, b.values, strict=True)]
    return out


def tagged_sequences(topic: str, valid: st.SearchStrategy[Wire],
                     hostile: st.SearchStrategy[Wire]) -> st.SearchStrategy[list[Tagged]]:
    return s.sequences(s.tagged(topic, valid), s.tagged(topic, hostile))


# --- candles ----------------------------------------------------------------------------------

WINDOWS = (TumblingWindow(60_000, SPAN_MS), TumblingWindow(300_000, SPAN_MS))


def feed_valid_after(op: PartitionOperator, topic: str, rows: list[dict[str, Any]],
                     first: int, batch_size: int, fed: Fed) -> Emission:
    """(d) valid rows fed after a run, at the offsets following it: none is dead-lettered;
    returns what the operator emitted for them."""
    after = feed(op, [(topic, s.ok("valid", r)) for r in rows], first, batch_size,
                 Fed(next_offset=dict(fed.next_offset)))
    assert not after.emission.dead_letters
    return after.emission


def close_everything(op: CandleOperator) -> Emission:
    """An end-of-input closure record per pair read after everything else (the valid event
    times lie up to `SPAN_MS` behind their ingestion time: history, which is never closed on
    idle)."""
    emission = Emission()
    values: list[bytes | None] = [
        WindowClosure(closure=ClosureRule.END_OF_INPUT, pair=pair,
                      through_ms=int(time)).to_wire()
        for pair, time in zip(op.pairs, op.stream_time, strict=True) if time >= 0]
    if values:
        start = op.position or 0
        emission.extend(op.process(InputBatch(
            "trades", PARTITION, np.arange(start, start + len(values), dtype=np.int64),
            [KEY] * len(values), values), 0))
    assert not emission.dead_letters
    return emission


def candle_counts(emission: Emission) -> Counter[str]:
    counts: Counter[str] = Counter()
    for topic, key, value in outputs(emission):
        assert topic == "candles"
        assert key not in counts, f"candle {key} emitted twice"
        counts[key] = value["trade_count"]
    return counts


def expected_candles(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(record_key(r["pair"], w.size_ms, r["timestamp_ms"] - r["timestamp_ms"]
                              % w.size_ms) for r in rows for w in WINDOWS)


@given(items=tagged_sequences("trades", s.trade_wires(), s.hostile_trades()),
       first=FIRST_OFFSETS, batch_size=BATCH_SIZES)
@RELIABLE
def test_candle_operator_survives_hostile_trades(items: list[Tagged], first: int,
                                                 batch_size: int) -> None:
    op = CandleOperator(CandleConfig(WINDOWS, "candles"), PARTITION)
    fed = feed(op, items, first, batch_size)
    check_dead_letters("candles", fed)
    fed.emission.extend(close_everything(op))
    assert candle_counts(fed.emission) == expected_candles(fed.valid_rows())

    # (d) later trades of a known pair and a new one still make candles
    later = [{"v": 1, "pair": pair, "price": 2.0, "volume": 1.0, "side": "buy",
              "order_type": "limit", "trade_id": 1, "timestamp_ms": T0 + 2 * SPAN_MS}
             for pair in (s.PAIRS[0], "NEW/USD")]
    emitted = feed_valid_after(op, "trades", later, first, batch_size, fed)
    emitted.extend(close_everything(op))
    assert candle_counts(emitted) == expected_candles(later)


# --- indicators -------------------------------------------------------------------------------

def expected_indicators(rows: list[dict[str, Any]]) -> Counter[tuple[str, float]]:
    """Each candle whose window is after every earlier one of its (pair, duration); the others
    are duplicates or replays, ignored without a dead letter."""
    latest: dict[tuple[str, int], int] = {}
    out: Counter[tuple[str, float]] = Counter()
    for r in rows:
        key = (r["pair"], r["window_ms"])
        if r["window_start_ms"] > latest.get(key, -1):
            latest[key] = r["window_start_ms"]
            out[(record_key(r["pair"], r["window_ms"], r["window_start_ms"]),
                 float(r["close"]))] += 1
    return out


def indicator_outputs(emission: Emission) -> Counter[tuple[str, float]]:
    got: Counter[tuple[str, float]] = Counter()
    for topic, key, value in outputs(emission):
        assert topic == "indicators"
        got[(key, float(value["close"]))] += 1
    return got


@given(items=tagged_sequences("candles", s.candle_wires(), s.hostile_candles()),
       first=FIRST_OFFSETS, batch_size=BATCH_SIZES)
@RELIABLE
def test_indicator_operator_survives_hostile_candles(items: list[Tagged], first: int,
                                                     batch_size: int) -> None:
    op = IndicatorOperator(IndicatorConfig("indicators"), PARTITION)
    fed = feed(op, items, first, batch_size)
    check_dead_letters("indicators", fed)
    rows = fed.valid_rows()
    assert indicator_outputs(fed.emission) == expected_indicators(rows)

    # (d) the next candle of a known pair still gives indicators
    size = s.CANDLE_SIZES[0]
    last = max([r["window_start_ms"] for r in rows
                if (r["pair"], r["window_ms"]) == (s.PAIRS[0], size)], default=T0)
    candle = {"pair": s.PAIRS[0], "window_ms": size, "window_start_ms": last + size,
              "window_end_ms": last + 2 * size, "open": 1.0, "high": 2.0, "low": 0.5,
              "close": 1.5, "volume": 3.0, "vwap": 1.2, "trade_count": 4}
    emitted = feed_valid_after(op, "candles", [candle], first, batch_size, fed)
    assert indicator_outputs(emitted) == expected_indicators([candle])


# --- markets predictor ------------------------------------------------------------------------

PREDICTED_MS = s.CANDLE_SIZES[0]


@given(items=tagged_sequences("indicators", s.indicator_wires(), s.hostile_indicators()),
       first=FIRST_OFFSETS, batch_size=BATCH_SIZES)
@RELIABLE
def test_markets_predictor_survives_hostile_indicator_rows(items: list[Tagged], first: int,
                                                          batch_size: int) -> None:
    store = FakeOnlineStore()
    rows = [w.row for _, w in items if w.valid and w.row is not None]
    mine = [r for r in rows if r["window_ms"] == PREDICTED_MS]
    for r in mine:  # the store holds each pair's latest candle: older rows are superseded
        store.latest_end[r["pair"]] = max(store.latest_end.get(r["pair"], -1),
                                          r["window_end_ms"])
    group = PredictorGroup(PredictorConfig("predictions", PREDICTED_MS, feature_wait_ms=0),
                           store, FakeModels())
    op = MarketsPredictorOperator(group, PARTITION)
    fed = feed(op, items, first, batch_size)
    check_dead_letters("markets_predictor", fed)
    predicted = [r for r in mine if r["window_end_ms"] == store.latest_end[r["pair"]]]
    got = Counter(key for topic, key, _ in outputs(fed.emission) if topic == "predictions")
    assert got == Counter(record_key(r["pair"], PREDICTED_MS, r["window_start_ms"])
                          for r in predicted)
    assert group.counts["other_duration"] == len(rows) - len(mine)
    assert group.counts["superseded"] == len(mine) - len(predicted)
    assert not group.pending

    # (d) the next row of a known pair is still predicted
    start = max(store.latest_end.values(), default=T0)
    row = {"pair": s.PAIRS[1], "window_ms": PREDICTED_MS, "window_start_ms": start,
           "window_end_ms": start + PREDICTED_MS, "close": 1.0}
    store.latest_end[s.PAIRS[1]] = start + PREDICTED_MS
    emitted = feed_valid_after(op, "indicators", [row], first, batch_size, fed)
    assert [key for _, key, _ in outputs(emitted)] == [
        record_key(s.PAIRS[1], PREDICTED_MS, start)]


# --- sensor windows ---------------------------------------------------------------------------

FEATURE_TOPICS = {"FA": "FA", "FI": "FI", "FD": "FD"}


def window_operator() -> SensorWindowOperator:
    config = SensorWindowConfig(sensor_window(SPAN_MS), DEFAULT_EDGES, FEATURE_TOPICS)
    return SensorWindowOperator(config, PARTITION)


def feature_outputs(emission: Emission) -> set[tuple[str, str, int]]:
    """The (feature, client, time) of every feature row (a correction repeats one)."""
    got: set[tuple[str, str, int]] = set()
    for topic, key, value in outputs(emission):
        assert (topic, key) == (value["feature"], value["client"])
        assert value["count"] >= 1 and 0 <= value["bin"] <= 9
        got.add((topic, value["client"], value["timestamp_ms"]))
    return got


def expected_features(rows: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
    """Features for every valid reading (readings sharing an event time share them)."""
    return {(f, r["client"], r["timestamp_ms"]) for r in rows for f in FEATURE_TOPICS}


@given(items=tagged_sequences("SZ", s.reading_wires("SZ"), s.hostile_readings("SZ")),
       first=FIRST_OFFSETS, batch_size=BATCH_SIZES)
@RELIABLE
def test_sensor_window_operator_survives_hostile_readings(items: list[Tagged], first: int,
                                                          batch_size: int) -> None:
    op = window_operator()
    fed = feed(op, items, first, batch_size)
    check_dead_letters("sensor_windows", fed)
    assert feature_outputs(fed.emission) == expected_features(fed.valid_rows())

    # (d) later readings of a known client and a new one still give features, at once
    later = [{"v": 1, "client": client, "timestamp_ms": T0 + 2 * SPAN_MS, "value": 1.0}
             for client in (s.CLIENTS[0], "new")]
    emitted = feed_valid_after(op, "SZ", later, first, batch_size, fed)
    assert feature_outputs(emitted) == expected_features(later)


# --- sensor join ------------------------------------------------------------------------------

VECTOR = ("SX", "SY", "FA", "FI", "FD")
MODEL = LogisticAlertModel("test-1", intercept=-2.0, coefficients=(0.1, 0.2, 0.3, 0.4, 0.5))

def expected_predictions(records: list[tuple[str, Wire]]) -> dict[str, tuple[int, ...]]:
    """The rule (`features.sensors.vectors.RULE`), written here again by brute force: every
    valid SX or SY record is an event, and every (client, time) whose FA, FI and FD all came
    (the last record of each counts) is an SZ event; an event's vector is SX and SY as of its
    time (the largest value at a tie) and the bins of the client's latest complete reading at
    or before it; events missing a field get nothing. No record is late (grace = the span)."""
    history: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    bins: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
    events: set[tuple[str, int, str]] = set()
    for topic, wire in records:
        row = wire.row
        if not wire.valid or row is None:
            continue
        client, ts = row["client"], row["timestamp_ms"]
        if topic in FEATURE_TOPICS:
            bins[(client, ts)][topic] = int(row["bin"])
        else:
            history[(client, topic)].append((ts, int(row["value"])))
            events.add((client, ts, topic))
    readings = {key: f for key, f in bins.items() if len(f) == len(FEATURE_TOPICS)}
    events |= {(client, ts, "SZ") for client, ts in readings}
    out: dict[str, tuple[int, ...]] = {}
    for client, ts, trigger in events:
        fields = [max((h for h in history[(client, s)] if h[0] <= ts), default=None)
                  for s in ("SX", "SY")]
        reading = max((t for c, t in readings if c == client and t <= ts), default=None)
        if None in fields or reading is None:
            continue
        f = readings[(client, reading)]
        out[f"{client}|{ts}|{trigger}"] = (*(v for _, v in fields),  # type: ignore[misc]
                                           f["FA"], f["FI"], f["FD"])
    return out


def prediction_outputs(emission: Emission) -> dict[str, tuple[int, ...]]:
    """Each prediction key's final vector (its last message)."""
    got: dict[str, tuple[int, ...]] = {}
    for topic, key, value in outputs(emission):
        assert topic == "predictions"
        assert key == f"{value['client']}|{value['timestamp_ms']}|{value['trigger']}"
        got[key] = tuple(value["vector"])
    return got


def join_records() -> tuple[st.SearchStrategy[Tagged], st.SearchStrategy[Tagged]]:
    valid = st.one_of(*(s.tagged(t, s.reading_wires(t)) for t in ("SX", "SY")),
                      *(s.tagged(t, s.feature_wires(t)) for t in FEATURE_TOPICS))
    hostile = st.one_of(*(s.tagged(t, s.hostile_readings(t)) for t in ("SX", "SY")),
                        *(s.tagged(t, s.hostile_features(t)) for t in FEATURE_TOPICS))
    return valid, hostile


@given(items=s.sequences(*join_records(), max_valid=40, max_hostile=20),
       first=FIRST_OFFSETS, batch_size=BATCH_SIZES)
@RELIABLE
def test_sensor_join_operator_survives_hostile_events(items: list[Tagged], first: int,
                                                      batch_size: int) -> None:
    topics = {t: t for t in VECTOR}
    op = SensorJoinOperator(SensorJoinConfig(topics, "predictions", MODEL, grace_ms=SPAN_MS),
                            PARTITION)
    fed = feed(op, items, first, batch_size)
    check_dead_letters("sensor_join", fed)
    fed.emission.extend(op.tick(0))  # consumed to the end: held SX/SY events are answered
    assert prediction_outputs(fed.emission) == expected_predictions(
        [(t, w) for t, _, w in fed.records])

    # (d) a new client's five fields still give a prediction
    final: list[Tagged] = [(t, s.ok("valid", {"v": 1, "client": "final", "timestamp_ms": T0,
                                              "value": 3})) for t in ("SX", "SY")]
    final += [(t, s.ok("valid", {"v": 1, "client": "final", "feature": t, "timestamp_ms": T0,
                                 "value": 0.5, "bin": 4, "edges_version": "e1",
                                 "window_ms": 600_000, "count": 2})) for t in FEATURE_TOPICS]
    after = feed(op, final, first, batch_size, Fed(next_offset=dict(fed.next_offset)))
    after.emission.extend(op.tick(0))
    assert not after.emission.dead_letters
    assert prediction_outputs(after.emission) == {
        f"final|{T0}|{t}": (3, 3, 4, 4, 4) for t in ("SX", "SY", "SZ")}


def test_sz_readings_beyond_the_bound_are_dead_lettered_and_those_at_it_give_finite_features(
) -> None:
    """Two SZ readings at the largest float sharing an event time overflowed the window sums to
    inf - inf = NaN, and binning NaN crashed the operator on every retry (found by this suite).
    Magnitudes beyond `MAX_SZ_MAGNITUDE` are invalid now (a rule both engines share); readings
    at the bound, alternating in sign and sharing event times, give finite features."""
    op = window_operator()
    huge = [{"v": 1, "client": "c0", "timestamp_ms": T0, "value": 1.7976931348623157e308}] * 2
    fed = feed(op, [("SZ", s.ok("valid", r)) for r in huge], 0, 10)
    assert [d.offset for d in fed.emission.dead_letters] == [0, 1]
    assert {d.reason for d in fed.emission.dead_letters} == {"invalid: value beyond +-1e+100"}

    op = window_operator()
    at_bound = [{"v": 1, "client": "c0", "timestamp_ms": T0 + i // 2,
                 "value": (-1) ** i * MAX_SZ_MAGNITUDE} for i in range(8)]
    fed = feed(op, [("SZ", s.ok("valid", r)) for r in at_bound], 0, 10)
    assert not fed.emission.dead_letters
    assert feature_outputs(fed.emission) == expected_features(at_bound)
    values = [value["value"] for _, _, value in outputs(fed.emission)]
    assert values and all(math.isfinite(v) for v in values)

"""The window and join operators without a broker: emission at once with corrections, lateness,
out-of-order property, restart from a checkpoint, the as-of join and dead letters.
(`test_sensors_exact_join.py` proves the two together against the training rows.)"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.sensors.binning import DEFAULT_EDGES
from features.sensors.model import LogisticAlertModel
from features.sensors.schemas import FeatureRow
from features.sensors.window_math import DEFAULT_MAX_LATENESS_MS, WINDOW_MS, sensor_window
from streaming.pipelines.sensors import reading_message
from streaming.processors.sensor_join import (
    SensorJoinConfig,
    SensorJoinGroup,
    SensorJoinOperator,
)
from streaming.processors.sensor_windows import (
    SensorWindowConfig,
    SensorWindowGroup,
    SensorWindowOperator,
)
from streaming.runtime.records import Emission, InputBatch
from tests.support.entity_keys import entity_keys

GRACE = 5_000
T0 = 1_767_225_600_000


def window_op(grace: int = GRACE) -> SensorWindowOperator:
    # the max lateness is at least the grace (a test may accept everything with a huge grace)
    config = SensorWindowConfig(sensor_window(grace, max(grace, DEFAULT_MAX_LATENESS_MS)),
                                DEFAULT_EDGES,
                                {"FA": "FA", "FI": "FI", "FD": "FD"})
    return SensorWindowOperator(config, 0)


def batch(topic: str, rows: list[tuple[str, int, float]], first_offset: int = 0,
          sensor: str = "SZ") -> InputBatch:
    return InputBatch(topic, 0, np.arange(first_offset, first_offset + len(rows), dtype=np.int64),
                      [c.encode() for c, _, _ in rows],
                      [reading_message(c, t, v, sensor) for c, t, v in rows])


def outputs(emission: Emission) -> list[tuple[str, str, bytes]]:
    """(topic, key, value) of every output, records and batches alike."""
    out = [(r.topic, r.key, r.value) for r in emission.records]
    for b in emission.batches:
        out += [(b.topic, k, v) for k, v in zip(b.keys, b.values, strict=True)]
    return out


def features_of(emission: Emission) -> dict[tuple[str, str, int], dict]:
    """Each (client, feature, time)'s last row: its final value (a correction comes later)."""
    out = {}
    for topic, key, value in outputs(emission):
        row = orjson.loads(value)
        assert (topic, key) == (row["feature"], row["client"])
        out[(row["client"], row["feature"], row["timestamp_ms"])] = row
    return out


def run_all(rows, batch_size: int = 7, grace: int = GRACE):
    op = window_op(grace)
    emitted = Emission()
    for start in range(0, len(rows), batch_size):
        emitted.extend(op.process(batch("SZ", rows[start:start + batch_size], start), 0))
    return emitted


def test_each_readings_features_go_out_in_the_poll_that_processes_it() -> None:
    op = window_op()
    out = op.process(batch("SZ", [("a", T0, 1.0)]), 0)
    got = features_of(out)
    assert sorted(got) == [("a", f, T0) for f in ("FA", "FD", "FI")]
    assert got[("a", "FA", T0)]["value"] == 1.0 and got[("a", "FA", T0)]["count"] == 1
    assert got[("a", "FA", T0)]["edges_version"] == DEFAULT_EDGES.version
    assert {k for _, k, _ in outputs(out)} == {"a"}
    out = op.process(batch("SZ", [("a", T0 + 2_000, 3.0)], 1), 0)
    got = features_of(out)
    assert sorted(got) == [("a", f, T0 + 2_000) for f in ("FA", "FD", "FI")]  # nothing else
    assert got[("a", "FA", T0 + 2_000)]["value"] == 2.0
    assert got[("a", "FI", T0 + 2_000)]["value"] == 4.0  # 2 s x (1 + 3) / 2
    assert got[("a", "FD", T0 + 2_000)]["value"] == 1.0  # (3 - 1) / 2 s


def test_a_reading_within_grace_behind_emitted_ones_corrects_those_whose_window_holds_it(
) -> None:
    op = window_op()
    op.process(batch("SZ", [("a", T0, 1.0), ("a", T0 + 4_000, 5.0), ("b", T0, 7.0)]), 0)
    out = op.process(batch("SZ", [("a", T0 + 2_000, 3.0)], 3), 0)  # 2 s behind: in grace
    got = features_of(out)
    # its own features, and a correction of the reading of 4 s (its window holds 2 s); the
    # reading of 0 s does not see it, client b is untouched
    assert sorted(got) == sorted([("a", f, t) for f in ("FA", "FI", "FD")
                                  for t in (T0 + 2_000, T0 + 4_000)])
    assert got[("a", "FA", T0 + 4_000)]["value"] == 3.0  # (1 + 3 + 5) / 3
    assert got[("a", "FA", T0 + 4_000)]["count"] == 3
    assert got[("a", "FI", T0 + 4_000)]["value"] == 12.0  # 2 x (1 + 3) / 2 + 2 x (3 + 5) / 2
    assert got[("a", "FA", T0 + 2_000)]["value"] == 2.0


def test_a_reading_beyond_grace_goes_to_the_dead_letter_topic_and_changes_nothing() -> None:
    op = window_op()
    op.process(batch("SZ", [("a", T0, 1.0), ("a", T0 + 60_000, 2.0)]), 0)
    out = op.process(batch("SZ", [("a", T0 + 60_000 - GRACE, 100.0), ("b", T0, 5.0)], 2), 0)
    assert [d.reason.split(":")[0] for d in out.dead_letters] == ["late"]
    assert out.dead_letters[0].offset == 2
    assert {k for k in features_of(out)} == {("b", f, T0) for f in ("FA", "FI", "FD")}


def test_invalid_readings_go_to_the_dead_letter_topic_with_the_reason() -> None:
    op = window_op()
    bad = InputBatch("SZ", 0, np.arange(3), [b"a"] * 3, [
        b"not json", orjson.dumps({"v": 1, "client": "a", "timestamp_ms": -5, "value": 1.0}),
        orjson.dumps({"v": 1, "client": "a", "timestamp_ms": T0})])
    out = op.process(bad, 0)
    reasons = [d.reason for d in out.dead_letters]
    assert reasons[0].startswith("decode:")
    assert reasons[1] == "invalid: timestamp_ms must be positive"
    assert reasons[2] == "invalid: value is not a finite number"  # missing value -> null


def sz_series(seed: int, clients: int = 3, n: int = 80) -> list[tuple[str, int, float]]:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(clients):
        ts = T0 + np.cumsum(rng.integers(1, 30_000, n))
        vals = np.round(rng.normal(50, 10, n), 3)
        rows += [(f"c{c}", int(t), float(v)) for t, v in zip(ts, vals, strict=True)]
    return sorted(rows, key=lambda r: r[1])


@given(st.integers(0, 10_000), st.integers(1, 40))
@settings(max_examples=60, deadline=None)
def test_out_of_order_within_grace_gives_the_same_features_as_ordered(seed, batch_size) -> None:
    ordered = sz_series(seed)
    rng = np.random.default_rng(seed + 1)
    # each reading arrives up to grace - 1 ms after its event time: disorder within grace
    arrival = np.array([t for _, t, _ in ordered]) + rng.integers(0, GRACE, len(ordered))
    shuffled = [ordered[i] for i in np.argsort(arrival, kind="stable")]
    a, b = run_all(ordered, batch_size), run_all(shuffled, batch_size)
    assert not a.dead_letters and not b.dead_letters
    fa, fb = features_of(a), features_of(b)  # the final values
    assert len(fa) == 3 * len(ordered)
    assert fa == fb
    assert a.output_count == len(fa)  # in order: each reading's features once, no correction


@given(st.integers(0, 10_000), st.integers(1, 200), st.booleans())
@settings(max_examples=40, deadline=None)
def test_restart_from_a_checkpoint_gives_the_same_features(seed, cut, crash_before_commit) -> None:
    rows = sz_series(seed, clients=2, n=60)
    rng = np.random.default_rng(seed)
    arrival = np.array([t for _, t, _ in rows]) + rng.integers(0, 3 * GRACE, len(rows))
    rows = [rows[i] for i in np.argsort(arrival, kind="stable")]  # some will be late
    cut = min(cut, len(rows) - 1)
    expected = run_all(rows, batch_size=5)

    first = window_op()
    before = Emission()
    for start in range(0, cut, 5):
        before.extend(first.process(batch("SZ", rows[start:min(cut, start + 5)], start), 0))
    committed_earlier = 0  # a kill -9 after the checkpoint, before the commit
    snapshot = orjson.loads(orjson.dumps(first.snapshot()))
    resume = committed_earlier if crash_before_commit else first.commit_offset("SZ")
    assert resume is not None
    second = window_op()
    second.restore(snapshot)
    after = Emission()
    for start in range(resume, len(rows), 5):
        after.extend(second.process(batch("SZ", rows[start:start + 5], start), 0))

    # each (client, feature, time)'s last message is the uninterrupted run's final value
    assert features_of(before) | features_of(after) == features_of(expected)
    letters = {d.offset for d in before.dead_letters} | {d.offset for d in after.dead_letters}
    assert letters == {d.offset for d in expected.dead_letters}


def test_buffer_keeps_only_what_future_windows_need_and_commit_follows_it() -> None:
    op = window_op(grace=0)
    rows = [("a", T0 + i * 60_000, float(i)) for i in range(30)]
    op.process(batch("SZ", rows), 0)
    op.snapshot()  # a checkpoint drops readings older than (horizon - W)
    assert op.buf_ts.min() > rows[-1][1] - WINDOW_MS
    assert op.commit_offset("SZ") == 20


# --- join ----------------------------------------------------------------------------------
MODEL = LogisticAlertModel("test-1", intercept=-2.0, coefficients=(0.1, 0.2, 0.3, 0.4, 0.5))


def join_op(threshold: float = 0.5) -> SensorJoinOperator:
    topics = {"SX": "SX", "SY": "SY", "FA": "FA", "FI": "FI", "FD": "FD"}
    return SensorJoinOperator(SensorJoinConfig(topics, "predictions", MODEL, threshold), 0)


def feature_batch(name: str, rows: list[tuple[str, int, int]], first: int = 0) -> InputBatch:
    values = [orjson.dumps({"v": 1, "client": c, "feature": name, "timestamp_ms": t,
                            "value": 1.5, "bin": b, "edges_version": "e1",
                            "window_ms": WINDOW_MS, "count": 1}) for c, t, b in rows]
    return InputBatch(name, 0, np.arange(first, first + len(rows)), entity_keys(values),
                      list[bytes | None](values))


def predictions(emission: Emission) -> list[dict]:
    return [orjson.loads(value) for _, _, value in outputs(emission)]


def fill(op: SensorJoinOperator, client: str = "a", t: int = T0) -> Emission:
    out = Emission()
    out.extend(op.process(batch("SX", [(client, t, 1)], sensor="SX"), 0))
    out.extend(op.process(batch("SY", [(client, t, 2)], sensor="SY"), 0))
    for name, b in (("FA", 3), ("FI", 4), ("FD", 5)):
        out.extend(op.process(feature_batch(name, [(client, t, b)]), 0))
    return out


def test_every_event_gets_its_prediction_once_its_vector_is_complete() -> None:
    op = join_op()
    out = predictions(fill(op))
    # SX and SY at T0 waited for the reading of T0, whose FD completed it: all three answered
    assert sorted(p["trigger"] for p in out) == ["SX", "SY", "SZ"]
    p = out[0]
    z = -2.0 + 0.1 * 1 + 0.2 * 2 + 0.3 * 3 + 0.4 * 4 + 0.5 * 5
    assert all(q["vector"] == [1, 2, 3, 4, 5] for q in out)
    assert p["probability"] == pytest.approx(1 / (1 + np.exp(-z)))
    assert p["alert"] is True and p["threshold"] == 0.5
    assert (p["client"], p["timestamp_ms"]) == ("a", T0)
    assert (p["model_version"], p["edges_version"]) == ("test-1", "e1")
    emitted = fill(join_op())
    keys = [k for b in emitted.batches for k in b.keys]
    assert sorted(keys) == [f"a|{T0}|{t}" for t in ("SX", "SY", "SZ")]
    assert {k for b in emitted.batches for k in b.partition_keys} == {"a"}


def caught_up(op: SensorJoinOperator, batch: InputBatch) -> Emission:
    """`batch` processed, then the tick the processor gives an operator whose input topics
    are consumed to their end."""
    out = op.process(batch, 0)
    out.extend(op.tick(0))
    return out


def test_every_newer_event_triggers_a_prediction_with_its_value() -> None:
    op = join_op(threshold=0.99)
    fill(op)
    out = predictions(caught_up(op, batch("SX", [("a", T0 + 10, 7), ("a", T0 + 20, 8)], 1,
                                          sensor="SX")))
    assert [p["vector"][0] for p in out] == [7, 8]
    assert [p["alert"] for p in out] == [p["probability"] >= 0.99 for p in out]


def test_an_event_is_answered_as_of_its_own_time_and_a_late_one_corrects_later_events(
) -> None:
    op = join_op()
    fill(op)
    newer = predictions(caught_up(op, batch("SY", [("a", T0 + 100, 9)], 1, sensor="SY")))
    assert [p["vector"] for p in newer] == [[1, 9, 3, 4, 5]]
    # an SY of 50 ms, behind the one of 100 ms but within grace: its own event sees SY 0; the
    # event of 100 ms still sees SY 9 (as of its time): unchanged, so not published again
    older = predictions(caught_up(op, batch("SY", [("a", T0 + 50, 0)], 2, sensor="SY")))
    assert [(p["timestamp_ms"], p["vector"]) for p in older] == [(T0 + 50, [1, 0, 3, 4, 5])]
    # an SX of 60 ms changes what the events of 60 ms and later see: both are corrected
    sx = predictions(caught_up(op, batch("SX", [("a", T0 + 60, 6)], 1, sensor="SX")))
    assert [(p["trigger"], p["timestamp_ms"], p["vector"]) for p in sx] == [
        ("SX", T0 + 60, [6, 0, 3, 4, 5]), ("SY", T0 + 100, [6, 9, 3, 4, 5])]
    # beyond grace (5 s behind the SY stream time of 100 ms): dead-lettered, no prediction
    caught_up(op, batch("SY", [("a", T0 + 10_000, 3)], 3, sensor="SY"))
    late = caught_up(op, batch("SY", [("a", T0 + 5_000, 4)], 4, sensor="SY"))
    assert outputs(late) == []
    assert [d.reason for d in late.dead_letters] == [
        "late: beyond 5000 ms grace for SY of its client (sensor join)"]


def test_an_sx_event_ahead_of_its_clients_features_waits_for_them_or_for_the_end_of_the_log(
) -> None:
    """With a backlog the join reads SX far ahead of the feature topics: an SX event is
    answered once the features reach its time (the reading it will see is there), or when
    every input topic is consumed to its end (the processor's tick), never corrected once per
    reading in between."""
    op = join_op()
    fill(op)  # features up to T0
    assert outputs(op.process(batch("SX", [("a", T0 + 9_000, 7)], 1, sensor="SX"), 0)) == []
    for k, t in enumerate((T0 + 3_000, T0 + 6_000)):  # readings before it: still held
        for name, bin_ in (("FA", 6), ("FI", 6), ("FD", 6)):
            out = predictions(op.process(feature_batch(name, [("a", t, bin_)], k + 1), 0))
        assert [p["trigger"] for p in out] == ["SZ"]
    for name in ("FA", "FI", "FD"):  # a reading after it: the SX event's answer is due
        out = predictions(op.process(feature_batch(name, [("a", T0 + 12_000, 8)], 3), 0))
    assert [(p["trigger"], p["vector"]) for p in out] == [("SX", [7, 2, 6, 6, 6]),
                                                          ("SZ", [7, 2, 8, 8, 8])]
    # no later reading: the tick answers it with what is there
    assert outputs(op.process(batch("SX", [("a", T0 + 20_000, 1)], 2, sensor="SX"), 0)) == []
    assert [p["vector"] for p in predictions(op.tick(0))] == [[1, 2, 8, 8, 8]]


def test_invalid_join_inputs_go_to_the_dead_letter_topic_with_the_reason() -> None:
    op = join_op()
    out = op.process(batch("SX", [("a", T0, 12), ("a", T0, 2.5)], sensor="SZ"), 0)
    assert [d.reason for d in out.dead_letters] == [
        "invalid: SX must be an integer category in 0..9"] * 2
    out = op.process(feature_batch("FA", [("a", T0, 10)]), 0)
    assert out.dead_letters[0].reason == "invalid: bin must be in 0..9"
    out = op.process(feature_batch("FI", [("a", T0, 1)]).__class__(
        "FA", 0, np.array([5]), [b"a"], [orjson.dumps({"v": 1, "client": "a"})]), 0)
    assert out.dead_letters[0].reason == "schema: missing field"
    # the rest of FeatureRow's contract: a window and a count that exist, named edges
    broken: list[dict[str, object]] = [{"count": 0}, {"count": -1}, {"window_ms": 0},
                                       {"edges_version": ""}, {"timestamp_ms": 1 << 43}]
    row = orjson.loads(feature_batch("FD", [("a", T0, 1)]).values[0] or b"")
    values: list[bytes | None] = [orjson.dumps({**row, **b}) for b in broken]
    out = op.process(InputBatch("FD", 0, np.arange(5), [b"a"] * 5, values), 0)
    assert [d.reason for d in out.dead_letters] == [
        "invalid: count must be at least 1", "invalid: count must be at least 1",
        "invalid: window_ms must be positive", "schema: edges_version must be a non-empty string",
        "invalid: timestamp_ms beyond the year 2248"]
    for b in broken:  # the model that documents the format says the same
        with pytest.raises(ValueError):
            FeatureRow.model_validate({k: v for k, v in {**row, **b}.items() if k != "v"})


def test_join_restart_rebuilds_its_history_from_the_log_and_answers_only_fresh_events(
) -> None:
    op = join_op()
    fill(op)
    snap = orjson.loads(orjson.dumps(op.snapshot()))
    assert snap["needed_from"] == dict.fromkeys(("FA", "FD", "FI", "SX", "SY"), 0)
    again = join_op()
    again.restore(snap)
    # the five messages are replayed from the commit offsets: back into the history, no
    # prediction (they were answered before the checkpoint)
    assert outputs(fill(again)) == []
    out = predictions(caught_up(again, batch("SX", [("a", T0 + 1, 4)], 1, sensor="SX")))
    assert [p["vector"] for p in out] == [[4, 2, 3, 4, 5]]


def test_a_fresh_event_waits_for_the_other_topics_replay_after_a_restart() -> None:
    op = join_op()
    fill(op)
    snap = orjson.loads(orjson.dumps(op.snapshot()))
    again = join_op()
    again.restore(snap)
    # SX is replayed and a fresh SX arrives before FA, FI, FD are replayed: no answer yet (the
    # vector would lack the reading's bins), then the replay of FD completes the history
    assert outputs(again.process(batch("SX", [("a", T0, 1), ("a", T0 + 1, 4)], sensor="SX"),
                                 0)) == []
    again.process(batch("SY", [("a", T0, 2)], sensor="SY"), 0)
    again.process(feature_batch("FA", [("a", T0, 3)]), 0)
    again.process(feature_batch("FI", [("a", T0, 4)]), 0)
    assert outputs(again.tick(0)) == []  # the tick answers nothing while FD still replays
    out = predictions(caught_up(again, feature_batch("FD", [("a", T0, 5)])))
    assert [(p["trigger"], p["timestamp_ms"], p["vector"]) for p in out] == [
        ("SX", T0 + 1, [4, 2, 3, 4, 5])]


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 40),
                          st.sampled_from([1.0, 2.0, 3.5, -1.0])), min_size=1, max_size=60),
       st.randoms(use_true_random=False), st.integers(1, 9))
@settings(max_examples=80, deadline=None)
def test_readings_sharing_a_timestamp_give_the_same_features_in_any_order(rows, rnd,
                                                                          size) -> None:
    """Ties in event time are ordered by value (the canonical order), never by arrival."""
    readings = [(c, T0 + k * 1_000, v) for c, k, v in rows]  # many equal timestamps
    ordered = sorted(readings, key=lambda r: r[1])
    shuffled = ordered[:]
    rnd.shuffle(shuffled)
    big_grace = 10**9  # everything is within grace: no reading is late in either order
    a, b = run_all(ordered, size, grace=big_grace), run_all(shuffled, size, grace=big_grace)
    assert features_of(a) == features_of(b)
    assert len({(c, t) for c, t, _ in readings}) * 3 == len(features_of(a))


def test_partitions_sharing_a_group_give_what_separate_operators_give() -> None:
    """process_many handles every partition's batch in one pass; results, dead letters,
    commit offsets and snapshots are per partition as if each had its own operator."""
    config = SensorWindowConfig(sensor_window(GRACE), DEFAULT_EDGES,
                                {"FA": "FA", "FI": "FI", "FD": "FD"})
    group = SensorWindowGroup(config)
    shared = [SensorWindowOperator(config, p, group) for p in (0, 1)]
    alone = [SensorWindowOperator(config, p) for p in (0, 1)]
    rows = {0: [r for r in sz_series(5) if r[0] in ("c0", "c1")],
            1: [r for r in sz_series(6) if r[0] == "c2"]}
    rows[1].insert(40, ("c2", T0, 1.0))  # late on partition 1
    got, want = Emission(), Emission()
    for start in range(0, 200, 9):
        pairs = []
        for p in (0, 1):
            chunk = rows[p][start:start + 9]
            if chunk:
                b = batch("SZ", chunk, start)
                b.partition = p
                pairs.append((shared[p], b))
                want.extend(alone[p].process(b, 0))
        got.extend(SensorWindowOperator.process_many(pairs, 0))
    assert features_of(got) == features_of(want)
    assert sorted((d.partition, d.offset) for d in got.dead_letters) == sorted(
        (d.partition, d.offset) for d in want.dead_letters) == [(1, 40)]
    for p in (0, 1):  # the processor snapshots, then asks for the commit offset
        assert shared[p].snapshot() == alone[p].snapshot()
        assert shared[p].commit_offset("SZ") == alone[p].commit_offset("SZ")
    shared[1].close()  # revoked: partition 1's clients are forgotten, partition 0 untouched
    assert shared[0].snapshot() == alone[0].snapshot()
    assert set(group.partitions) == {0}


def test_join_partitions_sharing_a_group_keep_their_own_state_and_checkpoints() -> None:
    topics = {"SX": "SX", "SY": "SY", "FA": "FA", "FI": "FI", "FD": "FD"}
    config = SensorJoinConfig(topics, "predictions", MODEL, 0.5)
    group = SensorJoinGroup(config)
    ops = [SensorJoinOperator(config, p, group) for p in (0, 1)]
    alone = join_op()
    pairs = []
    for client, p in (("a", 0), ("b", 1)):
        for sensor, value in (("SX", 1), ("SY", 2)):
            b = batch(sensor, [(client, T0, value)], sensor=sensor)
            b.partition = p
            pairs.append((ops[p], b))
        for name, bin_ in (("FA", 3), ("FI", 4), ("FD", 5)):
            b = feature_batch(name, [(client, T0, bin_)])
            b.partition = p
            pairs.append((ops[p], b))
    out = predictions(SensorJoinOperator.process_many(pairs, 0))
    assert sorted((p["client"], p["trigger"], p["vector"]) for p in out) == [
        (c, t, [1, 2, 3, 4, 5]) for c in ("a", "b") for t in ("SX", "SY", "SZ")]
    fill(alone)
    assert ops[0].snapshot() == alone.snapshot()  # partition 0 holds only client a
    saved = orjson.loads(orjson.dumps(ops[1].snapshot()))
    ops[1].close()  # revoked: b is forgotten, a untouched
    assert ops[0].snapshot() == alone.snapshot()
    again = SensorJoinOperator(config, 1, group)  # assigned again: restored, then replayed
    again.restore(saved)
    replay = []
    for sensor, value in (("SX", 1), ("SY", 2)):
        b = batch(sensor, [("b", T0, value)], sensor=sensor)
        b.partition = 1
        replay.append((again, b))
    for name, bin_ in (("FA", 3), ("FI", 4), ("FD", 5)):
        b = feature_batch(name, [("b", T0, bin_)])
        b.partition = 1
        replay.append((again, b))
    assert outputs(SensorJoinOperator.process_many(replay, 0)) == []
    assert predictions(caught_up(again, batch("SX", [("b", T0 + 5, 7)], 1, sensor="SX")))[0][
        "vector"] == [7, 2, 3, 4, 5]


def test_checkpoints_of_partitions_without_clients_restore() -> None:
    for make in (join_op, window_op):
        op = make()
        snap = orjson.loads(orjson.dumps(op.snapshot()))
        again = make()
        again.restore(snap)
        assert again.snapshot() == snap


def test_a_handed_over_partition_carries_its_buffer_and_resumes_where_it_stopped() -> None:
    rows = [(c, T0 + i * 5_000 + (i % 3) * 700, float((i * 37) % 11)) for i in range(40)
            for c in ("a", "b")]
    rows += [("a", T0 + 192_000, 7.0)]  # 3 s behind its client, within grace: a correction
    cut = 50
    first = window_op()
    first.process(batch("SZ", rows[:cut]), 0)
    light = orjson.loads(orjson.dumps(first.snapshot()))
    assert "buffer" not in light  # a plain checkpoint stays small: the log rebuilds the buffer
    first.hand_over()
    snap = orjson.loads(orjson.dumps(first.snapshot()))
    assert len(snap["buffer"]["timestamp_ms"]) == len(first.buf_ts) > 0
    assert snap["needed_from"] == 0  # the commit still covers what a kill -9 needs
    second = window_op()
    second.restore(snap)
    assert second.resume_offset("SZ") == cut
    np.testing.assert_array_equal(second.buf_ts, first.buf_ts)
    # from the next offset on it decides as the first would, value for value
    rest = batch("SZ", rows[cut:], cut)
    want = outputs(first.process(rest, 0))
    assert want and outputs(second.process(rest, 0)) == want
    # a consumer resuming at the committed offset instead re-reads readings held already:
    # nothing goes out twice, and the rest is the same
    third = window_op()
    third.restore(snap)
    assert outputs(third.process(batch("SZ", rows[:cut]), 0)) == []
    assert outputs(third.process(rest, 0)) == want


def test_a_partition_handed_over_mid_replay_carries_no_buffer() -> None:
    rows = [("a", T0 + i * 5_000, float(i)) for i in range(6)]
    first = window_op()
    first.process(batch("SZ", rows), 0)
    snap = orjson.loads(orjson.dumps(first.snapshot()))
    replaying = window_op()
    replaying.restore(snap)  # killed: a restart that has not replayed the log yet
    replaying.hand_over()
    handed = orjson.loads(orjson.dumps(replaying.snapshot()))
    assert "buffer" not in handed and handed["needed_from"] == snap["needed_from"]
    again = window_op()
    again.restore(handed)
    assert again.resume_offset("SZ") is None  # the next owner replays from the commit

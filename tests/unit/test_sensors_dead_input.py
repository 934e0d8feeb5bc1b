"""A client one of whose inputs stops: the operators' state and commit offsets stay bounded by
event time (its partition's stream time minus the max lateness), its served vectors stay the
training rows, and its last value of the dead input survives a restart through the checkpoint
(the log is not re-read from its offset)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from features.sensors.binning import BinEdges, BinRange
from features.sensors.model import LogisticAlertModel
from features.sensors.vectors import KEY_SPAN
from features.sensors.window_math import WINDOW_MS, sensor_window
from streaming.processors.sensor_join import SensorJoinConfig, unpack_rows
from streaming.processors.sensor_windows import SensorWindowConfig
from streaming.settings import SensorSettings
from tests.support.sensor_streams import JOIN_INPUTS, SensorStreams
from training.sensors_baseline import training_rows

T0 = 1_767_225_600_000
S = 1_000
GRACE_MS = 5_000
MAX_LATENESS_MS = 60_000
MODEL = LogisticAlertModel("dead-1", intercept=-3.0, coefficients=(0.1, 0.2, 0.3, 0.25, 0.35))
EDGES = BinEdges("dead-e1", {"FA": BinRange(0.0, 100.0), "FI": BinRange(0.0, 30_000.0),
                             "FD": BinRange(-4.0, 4.0)})


def streams() -> SensorStreams:
    return SensorStreams(MODEL, GRACE_MS, EDGES, max_lateness_ms=MAX_LATENESS_MS)


def publish_all(target: SensorStreams, rows: list[tuple[str, str, int, float]]) -> None:
    for sensor, client, seconds, value in rows:
        target.publish(sensor, client, T0 + seconds * S, value)


def training_by_key(rows: list[tuple[str, str, int, float]]) -> dict[str, list[int]]:
    import pyarrow as pa

    table = pa.table({"sensor": [r[0] for r in rows], "client": [r[1] for r in rows],
                      "timestamp_ms": pa.array([T0 + r[2] * S for r in rows], pa.int64()),
                      "value": [float(r[3]) for r in rows], "incident": [False] * len(rows)})
    built = training_rows(table, EDGES, GRACE_MS, max_lateness_ms=MAX_LATENESS_MS, partitions=1)
    return {f"{c}|{t}|{g}": v.tolist() for c, t, g, v in zip(
        built.clients, built.timestamps_ms, built.triggers, built.vectors, strict=True)}


def offsets_of(target: SensorStreams, topic: str, client: str) -> list[int]:
    return [i for i, m in enumerate(target.logs[topic]) if orjson.loads(m)["client"] == client]


def test_a_client_whose_sx_stopped_is_forgotten_but_its_last_sx_survives_a_restart() -> None:
    # a sends one SX (3) at 0 s and never again; b's SX, and both clients' SY and SZ, go on
    # every 10 s to 300 s, all in order
    rows: list[tuple[str, str, int, float]] = [("SX", "a", 0, 3)]
    for t in range(0, 301, 10):
        rows += [("SX", "b", t, 1 + t // 10 % 5), ("SY", "a", t, 4), ("SY", "b", t, 2),
                 ("SZ", "a", t, 40.0 + t % 30), ("SZ", "b", t, 60.0 - t % 20)]
    run = streams()
    publish_all(run, rows)
    run.drain()
    run.checkpoint("windows")
    run.checkpoint("join")

    join = run.join.operator.group  # type: ignore[attr-defined]
    a = join.clients.code("a")
    mine = join.sx.key // KEY_SPAN == a
    # a's only SX is kept as a base row: its value in the checkpoint, its offset forgotten
    assert join.sx.key[mine].tolist() == [a * KEY_SPAN + T0]
    assert join.sx.cols["value"][mine].tolist() == [3]
    assert join.sx.cols["offset"][mine].tolist() == [-1]
    assert run.join.snapshot is not None
    index = run.join.snapshot["clients"].index("a")
    base_sx = unpack_rows(run.join.snapshot["base"]["SX"], 3).tolist()
    assert [r for r in base_sx if r[0] == index] == [[index, T0, 3]]
    # a settled up to 300 s - 60 s (its SX partition's bound), b up to 300 s - grace: the SX
    # commit offset is past a's SX (offset 0), at b's last SX (300 s), the only row held
    b_sx = offsets_of(run, "SX", "b")
    assert run.join.committed["SX"] == b_sx[-1] == len(run.logs["SX"]) - 1
    # every history holds per client at most its rows after 240 s and one base row
    for history in (join.sx, join.sy, join.sz):
        times = history.key % KEY_SPAN
        assert int(((times <= T0 + 240 * S) & (history.key // KEY_SPAN == a)).sum()) <= 1
    # the window buffer keeps 10 minutes + the max lateness behind the partition's stream
    # time: everything of this 5-minute run still (the bound is the partition's, not a's)
    windows = run.windows.operator.group  # type: ignore[attr-defined]
    assert len(windows.buf_ts) == 62
    assert not (windows.buf_ts <= T0 + 300 * S - MAX_LATENESS_MS - WINDOW_MS).any()

    # the join restarts from its checkpoint; a's SX at offset 0 is not read again, yet a's next
    # events still get SX 3, as the training rows say
    run.crash("join")
    more: list[tuple[str, str, int, float]] = [("SY", "a", 310, 5), ("SZ", "a", 310, 45.0),
                                               ("SX", "b", 310, 2)]
    publish_all(run, more)
    run.drain()
    final = run.final_predictions()
    assert final[f"a|{T0 + 310 * S}|SY"]["vector"][0] == 3  # type: ignore[index]
    assert final[f"a|{T0 + 310 * S}|SZ"]["vector"][:2] == [3, 5]  # type: ignore[index]
    want = training_by_key(rows + more)
    assert {k: p["vector"] for k, p in final.items()} == want


def test_an_sx_event_of_a_client_whose_sz_stopped_is_answered_as_its_partition_moves_on(
) -> None:
    # c's SZ stops at 0 s; its SX of 100 s waits for c's features of 100 s, which never come:
    # once b's features pass 100 s + the max lateness (60 s), none of c's at or before 100 s
    # can come any more, and the event gets its final answer without waiting for a tick
    rows: list[tuple[str, str, int, float]] = [
        ("SX", "c", 0, 7), ("SY", "c", 0, 8), ("SZ", "c", 0, 50.0), ("SX", "c", 100, 9),
        ("SX", "b", 0, 1), ("SY", "b", 0, 2)]
    rows += [("SZ", "b", t, 30.0 + t % 40) for t in range(0, 201, 10)]
    rows += [("SY", "b", 205, 3)]  # stays unread: the join's input is never at its end
    run = streams()
    publish_all(run, rows)
    run.poll("windows", {"SZ": 10**6})
    key = f"c|{T0 + 100 * S}|SX"

    def feature_count(until_s: int) -> int:  # the feature rows up to `until_s` (in time order)
        times = [orjson.loads(m)["timestamp_ms"] for m in run.logs["FA"]]
        assert times == sorted(times)
        return int((np.asarray(times) <= T0 + until_s * S).sum())

    first = feature_count(150)  # b's features to 150 s: 150 - 60 < 100, c's SX event waits
    run.poll("join", {"SX": 10**6, "SY": 2, "FA": first, "FI": first, "FD": first})
    assert key not in dict(run.predictions)
    assert run.pending("join")["SY"] == 1
    rest = feature_count(200) - first  # to 200 s: 200 - 60 >= 100, answered in this poll
    run.poll("join", {"FA": rest, "FI": rest, "FD": rest})
    assert run.pending("join")["SY"] == 1  # no tick: the SY of 205 s is still unread
    got = orjson.loads(dict(run.predictions)[key])["vector"]
    want = training_by_key(rows)
    assert got == want[key]
    assert got[:2] == [9, 8]  # SX of 100 s, SY of 0 s; FA, FI, FD of c's only reading


def test_the_max_lateness_is_a_setting_and_must_exceed_the_event_time_skew(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert SensorSettings().max_lateness_ms == 2 * 3_600_000
    monkeypatch.setenv("BRAID_SENSORS_MAX_LATENESS", "3h")
    assert SensorSettings().max_lateness_ms == 3 * 3_600_000
    # a reading up to the skew limit ahead of its Kafka timestamp moves its partition's stream
    # time: a max lateness at or below the limit would make other clients' readings late
    with pytest.raises(ValueError, match="must exceed the event-time skew"):
        SensorJoinConfig({t: t for t in JOIN_INPUTS}, "p", MODEL, max_event_time_skew_ms=60_000,
                         max_lateness_ms=60_000)
    with pytest.raises(ValueError, match="must exceed the event-time skew"):
        SensorWindowConfig(sensor_window(GRACE_MS, 3_600_000), EDGES,
                           {"FA": "FA", "FI": "FI", "FD": "FD"})

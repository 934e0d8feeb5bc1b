"""The candle operator's event-time behaviour, without a broker.

Out-of-order trades within grace, late trades, idle closing, and the restart protocol
(snapshot + replay from the committed offset) that makes results effectively-once.
"""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from features.schemas.window_closure import ClosureRule, WindowClosure
from features.windows import TumblingWindow
from tests.support.operator_harness import candle_operator, close_all, encode_trades, feed

GRACE = 5_000
WINDOWS = [TumblingWindow(60_000, GRACE), TumblingWindow(300_000, GRACE)]
PAIRS = ["XBT/USD", "ETH/USD", "EOS/USD"]


def _trades(n: int, seed: int, *, jitter_ms: int = 0) -> list[dict[str, object]]:
    """Trades in event-time order, then shuffled within `jitter_ms` of event time."""
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000_000 + np.cumsum(rng.integers(1, 3_000, n))
    rows = [
        {"pair": PAIRS[int(rng.integers(0, 3))], "price": float(100 + rng.normal()),
         "volume": float(rng.uniform(0.01, 2)), "side": "buy", "order_type": "limit",
         "trade_id": i, "timestamp_ms": int(t)}
        for i, t in enumerate(ts)
    ]
    if jitter_ms:
        arrival = ts + rng.integers(0, jitter_ms, n)
        rows = [rows[i] for i in np.argsort(arrival, kind="stable")]
    return rows


def _run(values, **kw):
    op = candle_operator(WINDOWS)
    out, letters, _ = feed(op, values, **kw)
    out.update(close_all(op))
    return out, letters


@given(st.integers(0, 10_000), st.integers(1, 500))
@settings(max_examples=40, deadline=None)
def test_out_of_order_trades_within_grace_give_the_same_candles_as_sorted(seed, batch) -> None:
    # arrival delay < grace, so no trade can be late for its own pair
    ordered = _trades(300, seed)
    shuffled = _trades(300, seed, jitter_ms=GRACE)
    expected, letters_sorted = _run(encode_trades(ordered), batch_size=batch)
    got, letters = _run(encode_trades(shuffled), batch_size=batch)
    assert letters == [] and letters_sorted == []
    assert got.keys() == expected.keys()
    # bit-identical: a candle is computed at close from its trades in (time, id) order
    assert got == expected


def test_late_trade_beyond_grace_goes_to_dead_letter_with_reason_and_offset() -> None:
    rows = [
        {"pair": "XBT/USD", "price": 1.0, "volume": 1.0, "side": "buy", "order_type": "limit",
         "trade_id": i, "timestamp_ms": t}
        for i, t in enumerate([10_000, 70_000, 66_000, 20_000])
    ]
    out, letters = _run(encode_trades(rows), batch_size=1)
    # 66_000 makes [0, 60s) final (60s + 5s grace); the trade at 20_000 is then late, but
    # only for the 1-minute window: the 5-minute window [0, 300s) is still open
    assert [(letter.offset, letter.reason) for letter in letters] == [
        (3, "late by stream time: beyond 5000 ms grace for 1m windows")]
    assert letters[0].value == encode_trades(rows)[3]
    minute = {k: v for k, v in out.items() if v["window_ms"] == 60_000}
    assert [c["trade_count"] for c in minute.values()] == [1, 2]
    five = [v for v in out.values() if v["window_ms"] == 300_000]
    assert [c["trade_count"] for c in five] == [4]


def test_candles_close_on_stream_time_without_waiting_for_idleness() -> None:
    op = candle_operator([TumblingWindow(60_000, 1_000)])
    rows = [{"pair": "XBT/USD", "price": 1.0, "volume": 1.0, "side": "buy",
             "order_type": "limit", "trade_id": i, "timestamp_ms": t}
            for i, t in enumerate([1_000, 61_000])]
    out, _, _ = feed(op, encode_trades(rows), batch_size=1)
    assert list(out) == ["XBT/USD|60000|0"]  # closed when stream time reached 61_000


def test_a_quiet_live_pair_gets_its_candle_through_an_idle_closure_record() -> None:
    op = candle_operator([TumblingWindow(60_000, 1_000)], idle_timeout_ms=10_000)
    rows = [{"pair": p, "price": 1.0, "volume": 1.0, "side": "buy", "order_type": "limit",
             "trade_id": 1, "timestamp_ms": 1_000} for p in ("XBT/USD", "ETH/USD")]
    feed(op, encode_trades(rows), now_ms=2_000)  # live: arrived a second after event time
    assert op.tick(20_000).records == []  # quiet long enough, but [0, 60 s) + grace not over
    # ETH/USD keeps trading (its stream time stays inside the window); XBT/USD goes quiet
    feed(op, encode_trades([{**rows[1], "trade_id": 2, "timestamp_ms": 2_000}]),
         first_offset=2, now_ms=58_000)
    written = op.tick(62_000)
    # the decision is a record for the log, to the partition the operator reads; nothing
    # closes until the operator reads it back at its offset
    assert [(r.topic, r.partition, r.key) for r in written.records] == [("trades", 0, "XBT/USD")]
    closure = orjson.loads(written.records[0].value)
    assert {k: closure[k] for k in ("closure", "pair", "window_ms", "through_ms", "by")} == {
        "closure": "idle", "pair": "XBT/USD", "window_ms": 60_000, "through_ms": 59_999,
        "by": "test"}
    assert op.tick(62_500).records == []  # asked once, not on every tick
    out, letters, _ = feed(op, [written.records[0].value], first_offset=3, now_ms=62_600)
    assert list(out) == ["XBT/USD|60000|0"] and letters == []
    # a trade of the closed window after the closure record: late by that rule
    out, letters, _ = feed(op, encode_trades([{**rows[0], "trade_id": 3,
                                               "timestamp_ms": 30_000}]),
                           first_offset=4, now_ms=63_000)
    assert out == {}
    assert [(d.offset, d.reason) for d in letters] == [
        (4, "closed on idle: the pair's 1m window was closed by the closure record at offset 3")]


def test_bad_messages_go_to_dead_letters_and_the_rest_is_processed() -> None:
    good = encode_trades(_trades(5, 1))
    values = [good[0], b"not json", None, good[1].replace(b'"volume":', b'"volume":-'),
              *good[2:]]
    op = candle_operator(WINDOWS)
    out, letters, _ = feed(op, values)
    out.update(close_all(op))
    assert sorted((letter.offset, letter.reason.split(":")[0]) for letter in letters) == [
        (1, "decode"), (2, "decode"), (3, "invalid")]
    # the four intact trades (good[1] was corrupted) all made it into candles
    counts = [c["trade_count"] for c in out.values() if c["window_ms"] == 60_000]
    assert counts and sum(int(str(n)) for n in counts) == 4


def _with_closures(values: list[bytes], seed: int) -> list[bytes]:
    """`values` (some trades late) with an idle closure record of a pair after every ~40
    messages, through a little before that pair's stream time, as the processor writes them."""
    rng = np.random.default_rng(seed)
    out: list[bytes] = []
    latest: dict[str, int] = {}
    for i, value in enumerate(values):
        out.append(value)
        trade = orjson.loads(value)
        latest[trade["pair"]] = max(latest.get(trade["pair"], 0), trade["timestamp_ms"])
        if i % 40 == 39:
            pair = str(rng.choice(sorted(latest)))
            window = WINDOWS[int(rng.integers(0, len(WINDOWS)))]
            out.append(WindowClosure(closure=ClosureRule.IDLE, pair=pair,
                                     window_ms=window.size_ms,
                                     through_ms=latest[pair] - int(rng.integers(0, 20_000)),
                                     by="test").to_wire())
    return out


@given(st.integers(0, 1000), st.lists(st.integers(1, 599), min_size=1, max_size=4,
                                     unique=True), st.booleans())
@settings(max_examples=60, deadline=None)
def test_restart_from_any_checkpoint_gives_exactly_the_uninterrupted_candles(
    seed, crash_points, crash_before_commit
) -> None:
    """Simulate kill -9 at several points: the run restores the last checkpoint and replays from
    the committed offset (one checkpoint older when the crash fell between checkpoint and
    commit). Every value ever emitted for a key must equal the uninterrupted run's value, and
    the closure records in the log are applied at the same offsets again."""
    values = _with_closures(encode_trades(_trades(600, seed, jitter_ms=2 * GRACE)), seed)
    expected, expected_letters = _run(values, batch_size=37)

    emitted: dict[str, set[bytes]] = {}
    letters_seen: set[int] = set()
    op = candle_operator(WINDOWS)
    checkpoints: list[tuple[dict, int | None]] = [({}, None)]  # (snapshot, commit offset)
    position = 0
    for crash in sorted(crash_points):
        while position < crash:
            hi = min(crash, position + 37)
            out, letters, order = feed(op, values[position:hi], first_offset=position)
            for key in order:
                emitted.setdefault(key, set()).add(orjson.dumps(out[key]))
            letters_seen |= {letter.offset for letter in letters}
            position = hi
            checkpoints.append((orjson.loads(orjson.dumps(op.snapshot())),
                                op.commit_offset("trades")))
        # crash: a new operator restores the checkpoint and the consumer resumes at the commit
        snapshot, _ = checkpoints[-1]
        _, commit = checkpoints[-2] if crash_before_commit else checkpoints[-1]
        op = candle_operator(WINDOWS)
        if snapshot:
            op.restore(snapshot)
        position = commit or 0
    out, letters, order = feed(op, values[position:], first_offset=position, batch_size=37)
    for key in order:
        emitted.setdefault(key, set()).add(orjson.dumps(out[key]))
    for key, value in close_all(op).items():
        emitted.setdefault(key, set()).add(orjson.dumps(value))
    letters_seen |= {letter.offset for letter in letters}

    assert emitted.keys() == expected.keys()
    for key, values_for_key in emitted.items():
        # duplicates are allowed, but only with the identical value
        assert [orjson.loads(v) for v in values_for_key] == [expected[key]], key
    assert letters_seen == {letter.offset for letter in expected_letters}


def test_a_snapshot_is_a_copy_that_later_processing_leaves_alone() -> None:
    """The processor writes a snapshot once the outputs before it are acknowledged, while the
    operator processes on: a pair seen meanwhile must not slip into it (its restore then
    failed with an IndexError on the pair's missing stream time, seen in a kill -9 test)."""
    op = candle_operator(WINDOWS)
    rows = _trades(40, 3)
    feed(op, encode_trades([r for r in rows if r["pair"] == "XBT/USD"][:5]))
    snapshot = op.snapshot()
    feed(op, encode_trades([r for r in rows if r["pair"] != "XBT/USD"]), first_offset=5)
    written = orjson.loads(orjson.dumps(snapshot))
    assert written["pairs"] == ["XBT/USD"] and len(written["stream_time"]) == 1
    restored = candle_operator(WINDOWS)
    restored.restore(written)
    _, letters, _ = feed(restored, encode_trades(rows), first_offset=0)
    assert letters == [] and restored.pairs[0] == "XBT/USD"

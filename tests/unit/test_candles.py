"""The candle definition, checked against hand computations and against itself split anyhow."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.candles import aggregate_trades, finalize, key_time_order
from features.windows import TumblingWindow

MINUTE = TumblingWindow(60_000)


def _candles(ts, tid, price, volume, key=None):
    key = np.zeros(len(ts), dtype=np.int64) if key is None else np.asarray(key)
    return finalize(aggregate_trades(MINUTE, key, np.asarray(ts), np.asarray(tid),
                                     np.asarray(price, float), np.asarray(volume, float)))


def test_candle_of_three_trades_matches_hand_computation() -> None:
    c = _candles([1_000, 2_000, 59_999], [1, 2, 3], [10.0, 12.0, 11.0], [1.0, 2.0, 1.0])
    assert c["window_start_ms"].tolist() == [0]
    assert (c["open"][0], c["high"][0], c["low"][0], c["close"][0]) == (10.0, 12.0, 10.0, 11.0)
    assert c["volume"][0] == 4.0
    assert c["vwap"][0] == (10 * 1 + 12 * 2 + 11 * 1) / 4
    assert c["trade_count"][0] == 3


def test_windows_are_half_open_and_epoch_aligned() -> None:
    c = _candles([59_999, 60_000, 119_999, 120_000], [1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0],
                 [1.0] * 4)
    assert c["window_start_ms"].tolist() == [0, 60_000, 120_000]
    assert c["trade_count"].tolist() == [1, 2, 1]


def test_open_and_close_follow_time_then_trade_id_not_arrival() -> None:
    # arrival order: id 7 (t=5) then id 3 (t=5) then id 1 (t=9): open is id 3, close is id 1
    c = _candles([5, 5, 9], [7, 3, 1], [70.0, 30.0, 10.0], [1.0, 1.0, 1.0])
    assert c["open"][0] == 30.0
    assert c["close"][0] == 10.0


def test_same_time_and_id_keeps_arrival_order() -> None:
    c = _candles([5, 5], [1, 1], [1.0, 2.0], [1.0, 1.0])
    assert (c["open"][0], c["close"][0]) == (1.0, 2.0)


def test_pairs_are_aggregated_separately() -> None:
    c = _candles([1, 2, 3], [1, 1, 2], [1.0, 100.0, 3.0], [1.0, 1.0, 1.0], key=[0, 1, 0])
    assert c["key"].tolist() == [0, 1]
    assert c["close"].tolist() == [3.0, 100.0]


trades = st.lists(
    st.tuples(
        st.integers(0, 2),  # pair
        st.integers(0, 400_000),  # timestamp
        st.integers(0, 5),  # trade id (ties on purpose)
        st.floats(0.5, 1000, allow_nan=False),
        st.floats(0.001, 10, allow_nan=False),
    ),
    min_size=1,
    max_size=60,
)


@given(trades, st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_arrival_order_does_not_change_a_single_bit(rows, random) -> None:
    # trades with the same (time, id) keep arrival order by definition: make ids unique here
    rows = [(k, t, i, p, v) for i, (k, t, _, p, v) in enumerate(rows)]
    shuffled = rows[:]
    random.shuffle(shuffled)
    a = finalize(aggregate_trades(MINUTE, *(np.array(c) for c in zip(*rows, strict=True))))
    b = finalize(aggregate_trades(MINUTE, *(np.array(c) for c in zip(*shuffled, strict=True))))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@given(trades)
@settings(max_examples=200, deadline=None)
def test_candles_match_a_naive_loop(rows) -> None:
    k, ts, tid, p, v = (np.array(c) for c in zip(*rows, strict=True))
    got = finalize(aggregate_trades(MINUTE, k, ts, tid, p, v))
    expected: dict[tuple[int, int], list[tuple[int, int, int, float, float]]] = {}
    for arrival, (key, t, i, price, vol) in enumerate(rows):
        expected.setdefault((key, t - t % 60_000), []).append((t, i, arrival, price, vol))
    assert len(got["key"]) == len(expected)
    for row, (key, start) in enumerate(sorted(expected)):
        group = sorted(expected[(key, start)])
        assert (got["key"][row], got["window_start_ms"][row]) == (key, start)
        assert got["open"][row] == group[0][3]
        assert got["close"][row] == group[-1][3]
        assert got["high"][row] == max(g[3] for g in group)
        assert got["low"][row] == min(g[3] for g in group)
        assert np.isclose(got["volume"][row], sum(g[4] for g in group), rtol=1e-12)
        vwap = sum(g[3] * g[4] for g in group) / sum(g[4] for g in group)
        assert np.isclose(got["vwap"][row], vwap, rtol=1e-12)
        assert got["trade_count"][row] == len(group)


@given(trades, st.booleans())
@settings(max_examples=200, deadline=None)
def test_trades_put_in_key_time_order_once_give_the_same_bits_for_every_window(
    rows, time_sorted
) -> None:
    # duplicate (time, id) pairs stay: their arrival order must survive the one sort
    if time_sorted:  # a file in event-time order: the stable sort by key and a check
        rows = sorted(rows, key=lambda r: (r[1], r[2]))
    k, ts, tid, p, v = (np.array(c) for c in zip(*rows, strict=True))
    order = key_time_order(k, ts, tid)
    assert order.tolist() == np.lexsort((tid, ts, k)).tolist()
    for window in (MINUTE, TumblingWindow(3_600_000), TumblingWindow(86_400_000)):
        want = finalize(aggregate_trades(window, k, ts, tid, p, v))
        got = finalize(aggregate_trades(window, k[order], ts[order], tid[order], p[order],
                                        v[order], presorted=True))
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)

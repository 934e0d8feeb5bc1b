"""FA, FI, FD against an independent per-reading computation (numpy.trapezoid, plain loops)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.sensors.binning import DEFAULT_EDGES, BinEdges, BinRange, learn_edges
from features.sensors.vectors import KEY_SPAN
from features.sensors.window_math import (
    WINDOW_MS,
    keyed_window_features,
    sort_readings,
    window_features,
)


def independent(ts: np.ndarray, v: np.ndarray, i: int, window_ms: int = WINDOW_MS):
    """The definition, read literally: readings in (t_i - W, t_i], ordered by (time, value)."""
    inside = (ts > ts[i] - window_ms) & (ts <= ts[i])
    order = np.lexsort((v[inside], ts[inside]))
    t, x = ts[inside][order] / 1000.0, v[inside][order]
    fa = float(np.mean(x))
    fi = float(np.trapezoid(x, t)) if len(x) > 1 else 0.0
    fd = float((x[-1] - x[0]) / (t[-1] - t[0])) if t[-1] > t[0] else 0.0
    return fa, fi, fd, int(inside.sum())


def test_hand_computed_window_of_three_readings() -> None:
    ts = np.array([0, 60_000, 120_000])
    v = np.array([10.0, 20.0, 40.0])
    f = window_features(np.zeros(3, dtype=np.int64), ts, v)
    assert f.fa.tolist() == pytest.approx([10.0, 15.0, 70 / 3])
    # trapezoids: 60 s x 15 = 900, then + 60 s x 30 = 1800
    assert f.fi.tolist() == pytest.approx([0.0, 900.0, 2700.0])
    # (20 - 10) / 60 s, (40 - 10) / 120 s
    assert f.fd.tolist() == pytest.approx([0.0, 1 / 6, 0.25])
    assert f.count.tolist() == [1, 2, 3]


def test_window_is_open_at_its_start_and_closed_at_its_end() -> None:
    ts = np.array([0, WINDOW_MS, WINDOW_MS + 1])
    f = window_features(np.zeros(3, dtype=np.int64), ts, np.array([1.0, 2.0, 3.0]))
    # the reading exactly W before is out: (t - W, t]
    assert f.count.tolist() == [1, 1, 2]


def test_a_single_reading_has_zero_integral_and_zero_derivative() -> None:
    f = window_features(np.array([0]), np.array([5_000]), np.array([42.0]))
    assert (f.fa[0], f.fi[0], f.fd[0]) == (42.0, 0.0, 0.0)


def test_clients_never_share_windows() -> None:
    codes = np.array([0, 0, 1, 1])
    ts = np.array([1_000, 2_000, 1_500, 2_500])
    f = window_features(codes, ts, np.array([1.0, 3.0, 100.0, 300.0]))
    assert f.count.tolist() == [1, 2, 1, 2]
    assert f.fa.tolist() == [1.0, 2.0, 100.0, 200.0]


readings = st.lists(
    st.tuples(st.integers(0, 2), st.integers(1, 3 * WINDOW_MS),
              st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)),
    min_size=1, max_size=60)


@given(readings)
@settings(max_examples=200, deadline=None)
def test_features_equal_the_literal_definition(rows) -> None:
    codes = np.array([r[0] for r in rows], dtype=np.int64)
    ts = np.array([r[1] for r in rows], dtype=np.int64)
    v = np.array([r[2] for r in rows])
    order = sort_readings(codes, ts, v)
    codes, ts, v = codes[order], ts[order], v[order]
    f = window_features(codes, ts, v)
    for i in range(len(ts)):
        mine = codes == codes[i]
        fa, fi, fd, n = independent(ts[mine], v[mine], int(np.flatnonzero(mine).tolist().index(i)))
        assert f.count[i] == n
        assert f.fa[i] == pytest.approx(fa, rel=1e-9, abs=1e-9)
        assert f.fi[i] == pytest.approx(fi, rel=1e-9, abs=1e-6)
        assert f.fd[i] == pytest.approx(fd, rel=1e-9, abs=1e-9)


@given(readings, st.integers(0, 59))
@settings(max_examples=200, deadline=None)
def test_a_window_value_does_not_depend_on_what_else_is_in_the_array(rows, cut) -> None:
    """Bit-identical whether computed over all history (batch) or a recent buffer (stream)."""
    codes = np.zeros(len(rows), dtype=np.int64)
    ts = np.array([r[1] for r in rows], dtype=np.int64)
    v = np.array([r[2] for r in rows])
    order = sort_readings(codes, ts, v)
    ts, v = ts[order], v[order]
    full = window_features(codes, ts, v)
    last = len(ts) - 1
    start = int(np.searchsorted(ts, ts[last] - WINDOW_MS, side="right"))
    start = max(0, start - cut)  # a buffer holding `cut` readings before the window
    part = window_features(codes[start:], ts[start:], v[start:], np.array([last - start]))
    assert (part.fa[0], part.fi[0], part.fd[0]) == (full.fa[last], full.fi[last], full.fd[last])


@given(readings, st.data())
@settings(max_examples=200, deadline=None)
def test_the_streams_keyed_form_gives_the_same_bits(rows, data) -> None:
    """The window processor computes on `client * KEY_SPAN + time` keys, every client's block
    as wide as all time (not spaced by the batch's own span), with event times here within a
    window of zero: a window's start must stop at its client's block, never reach the previous
    client's last readings. Same bits as `window_features` (the backfill's form), and the
    literal definition."""
    codes = np.array([r[0] for r in rows], dtype=np.int64)
    ts = np.array([r[1] for r in rows], dtype=np.int64)
    v = np.array([r[2] for r in rows])
    order = sort_readings(codes, ts, v)
    codes, ts, v = codes[order], ts[order], v[order]
    targets = np.array(sorted(data.draw(st.sets(st.integers(0, len(ts) - 1), min_size=1))))
    batch = window_features(codes, ts, v, targets)
    # each client's block ends where the next begins: readings at the top of the previous
    # block lie just under this client's earliest times
    shifted = np.where(codes % 2 == 1, KEY_SPAN - 1 - ts, ts)  # odd clients: near the top
    order = sort_readings(codes, shifted, v)
    keyed = keyed_window_features(codes[order] * KEY_SPAN + shifted[order], v[order],
                                  np.argsort(order)[targets], WINDOW_MS, KEY_SPAN)
    even = codes[targets] % 2 == 0
    for name in ("fa", "fi", "fd", "count"):
        assert (getattr(keyed, name)[even] == getattr(batch, name)[even]).all(), name
    for j, i in enumerate(targets.tolist()):
        if codes[i] % 2 == 0:
            mine = codes == codes[i]
            at = int(np.flatnonzero(mine).tolist().index(i))
            fa, _, _, n = independent(ts[mine], v[mine], at)
            assert keyed.count[j] == n
            assert keyed.fa[j] == pytest.approx(fa, rel=1e-9, abs=1e-9)


def test_uniform_bins_cover_ten_buckets_and_clip_outside_the_range() -> None:
    r = BinRange(0.0, 100.0)
    x = np.array([-5.0, 0.0, 9.999, 10.0, 55.0, 99.99, 100.0, 1e9])
    assert r.bin(x).tolist() == [0, 0, 0, 1, 5, 9, 9, 9]
    # independent: floor((x - low) / width), clipped
    assert r.bin(x).tolist() == np.clip(np.floor(x / 10.0), 0, 9).astype(int).tolist()


def test_binning_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        BinRange(0.0, 1.0).bin(np.array([np.nan]))


def test_bin_edges_are_versioned_and_round_trip(tmp_path) -> None:
    path = tmp_path / "edges.json"
    DEFAULT_EDGES.save(path)
    assert BinEdges.load(path) == DEFAULT_EDGES


def test_learned_edges_span_the_robust_range_of_history() -> None:
    rng = np.random.default_rng(1)
    fa = rng.normal(50, 5, 10_000)
    edges = learn_edges("learned-1", fa, fa * 600, fa / 1000)
    assert edges.version == "learned-1"
    assert edges.ranges["FA"].low == pytest.approx(np.quantile(fa, 0.005))
    counts = np.bincount(edges.bin("FA", fa), minlength=10)
    assert counts.min() > 0  # every bucket used

"""Event-time window rules: alignment, durations, per-key stream time and lateness."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.windows import (
    NO_STREAM_TIME,
    TumblingWindow,
    format_duration,
    late_mask,
    parse_duration_ms,
    stream_time_before,
)


@pytest.mark.parametrize(
    ("text", "ms"), [("60s", 60_000), ("5m", 300_000), ("1h", 3_600_000), ("1d", 86_400_000),
                     ("250ms", 250), (1500, 1500)],
)
def test_durations_parse_to_milliseconds(text, ms) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "5", "-5s", "0s", "1w", "five minutes"])
def test_bad_durations_are_rejected_with_a_clear_error(text) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms(text)


def test_duration_labels_are_exact() -> None:
    assert [format_duration(m) for m in (60_000, 90_000, 86_400_000, 1)] == ["1m", "90s", "1d",
                                                                             "1ms"]


def test_window_start_is_epoch_aligned_utc() -> None:
    w = TumblingWindow(86_400_000)
    # 2018-05-08 04:11:40 UTC -> 2018-05-08 00:00 UTC
    assert w.start_of(np.array([1525752700029]))[0] == 1525737600000


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 10_000)), max_size=50),
       st.lists(st.integers(NO_STREAM_TIME, 10_000), min_size=4, max_size=4))
@settings(max_examples=300, deadline=None)
def test_stream_time_before_matches_a_running_max_per_key(rows, initial) -> None:
    keys = np.array([r[0] for r in rows], dtype=np.int64)
    ts = np.array([r[1] for r in rows], dtype=np.int64)
    got = stream_time_before(keys, ts, np.array(initial, dtype=np.int64))
    seen = list(initial)
    for i, (k, t) in enumerate(rows):
        assert got[i] == seen[k]
        seen[k] = max(seen[k], t)


def test_a_trade_is_late_only_after_its_window_end_plus_grace_passed_for_its_own_pair() -> None:
    w = TumblingWindow(60_000, grace_ms=5_000)
    keys = np.array([0, 0, 0, 1, 0])
    # pair 0 reaches 65_000 (window [0,60s) closes), then a trade at 30_000 is late;
    # pair 1's trade at 30_000 is not late: pair 1 has seen nothing
    ts = np.array([10_000, 65_000, 64_999, 30_000, 30_000])
    late = late_mask(w, keys, ts, np.array([NO_STREAM_TIME, NO_STREAM_TIME]))
    assert late.tolist() == [False, False, False, False, True]


def test_windows_closed_on_idleness_make_later_trades_late() -> None:
    w = TumblingWindow(60_000, grace_ms=5_000)
    late = late_mask(w, np.array([0, 0]), np.array([59_000, 60_000]),
                     np.array([NO_STREAM_TIME]), closed_until=np.array([60_000]))
    assert late.tolist() == [True, False]

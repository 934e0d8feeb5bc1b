"""The window processor's two-level reading buffer holds what one sorted array would: after any
sequence of appends (ties of client and time included), prunes and merges, its readings and any
client's context equal those of a plain list sorted by (client, time, value), built here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.sensors.vectors import KEY_SPAN
from streaming.processors import sensor_buffer
from streaming.processors.sensor_buffer import Context, ReadingBuffer, Readings

# (client code, event time, value): few clients and times, so ties are common
reading = st.tuples(st.integers(0, 2), st.integers(1, 5), st.sampled_from([0.5, 1.0, 2.0]))
step = st.one_of(
    st.tuples(st.just("append"), st.lists(reading, min_size=1, max_size=6)),
    st.tuples(st.just("prune"), st.integers(0, 5)),  # drop readings at or before this time
    st.tuples(st.just("flat"), st.none()),
)


def _batch(rows: list[tuple[int, int, float]], first_offset: int) -> Readings:
    codes = np.array([r[0] for r in rows], dtype=np.int64)
    return Readings.sorted_batch(
        codes, np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.float64),
        np.arange(first_offset, first_offset + len(rows), dtype=np.int64), codes % 2)


def _after(cut: int) -> Callable[[Readings], np.ndarray]:
    return lambda level: level.ts > cut


def _rows(readings: Readings | Context) -> list[tuple[int, int, float]]:
    return list(zip((readings.key // KEY_SPAN).tolist(), (readings.key % KEY_SPAN).tolist(),
                    readings.value.tolist(), strict=True))


@pytest.mark.parametrize("recent_min", [1, 2, 5])
@given(steps=st.lists(step, max_size=25), lo=st.integers(0, 5))
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_two_levels_hold_what_one_sorted_list_holds(
        recent_min: int, steps: list[tuple[str, Any]], lo: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sensor_buffer, "RECENT_MIN", recent_min)
    buffer = ReadingBuffer()
    expected: list[tuple[int, int, float]] = []
    offset = 0
    for kind, arg in steps:
        if kind == "append":
            rows = list(arg)
            buffer.append(_batch(rows, offset))
            offset += len(rows)
            expected = sorted(expected + rows)
        elif kind == "prune":
            buffer.keep(_after(arg))
            expected = [r for r in expected if r[1] > arg]
        else:
            buffer.flat()
        assert len(buffer) == len(expected)
        # every client's readings after time `lo`, from both levels, in (client, time, value)
        clients = np.arange(4, dtype=np.int64)
        context = buffer.context(clients * KEY_SPAN + lo, (clients + 1) * KEY_SPAN)
        assert _rows(context) == [r for r in expected if r[1] > lo]
        assert (np.diff(context.key) >= 0).all()
    assert _rows(buffer.flat()) == expected
    assert len(buffer.recent) == 0

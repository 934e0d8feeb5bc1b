"""The join's sorted rows (`streaming.processors.sensor_history.Rows`) after any sequence of
inserts hold what one list sorted by hand holds: by key, then by the `sort_by` column, rows equal
in both in the order they came (held before new); without `sort_by`, a new row goes before held
rows of its key. Keys and ties are drawn from few values, so ties are the common case."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.processors.sensor_history import Rows

batches = st.lists(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2)), min_size=1,
                            max_size=8), max_size=8)


def _rows(held: Rows) -> list[tuple[int, int, int]]:
    return list(zip(held.key.tolist(), held.cols["tie"].tolist(), held.cols["seq"].tolist(),
                    strict=True))


@given(batches)
@settings(max_examples=300, deadline=None)
def test_rows_sorted_by_key_then_tie_in_arrival_order(inserts: list[list[tuple[int, int]]]) -> None:
    held = Rows(tie=np.int64, seq=np.int64)
    expected: list[tuple[int, int, int]] = []
    seq = 0
    for batch in inserts:
        keys = np.array([k for k, _ in batch], dtype=np.int64)
        ties = np.array([t for _, t in batch], dtype=np.int64)
        seqs = np.arange(seq, seq + len(batch), dtype=np.int64)
        held.insert(keys, sort_by="tie", tie=ties, seq=seqs)
        expected = sorted(expected + list(zip(keys.tolist(), ties.tolist(), seqs.tolist(),
                                              strict=True)))  # seq: arrival order
        seq += len(batch)
        assert _rows(held) == expected


@given(batches)
@settings(max_examples=300, deadline=None)
def test_without_sort_by_new_rows_go_before_held_rows_of_their_key(
        inserts: list[list[tuple[int, int]]]) -> None:
    held = Rows(tie=np.int64, seq=np.int64)
    expected: list[tuple[int, int, int, int]] = []  # key, -insert number, seq, tie
    seq = 0
    for number, batch in enumerate(inserts):
        keys = np.array([k for k, _ in batch], dtype=np.int64)
        ties = np.array([t for _, t in batch], dtype=np.int64)
        seqs = np.arange(seq, seq + len(batch), dtype=np.int64)
        held.insert(keys, tie=ties, seq=seqs)
        rows = [(k, -number, s, t) for k, t, s in zip(keys.tolist(), ties.tolist(),
                                                      seqs.tolist(), strict=True)]
        expected = sorted(expected + rows)
        seq += len(batch)
        assert _rows(held) == [(k, t, s) for k, _, s, t in expected]

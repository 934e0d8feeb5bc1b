"""The order in which a backfill's input trades "arrived", which decides lateness.

Lateness (`features.windows.late_mask`) is judged per pair in arrival order, so the backfill must
see the trades in the order the speed layer saw them:

- `EVENT_TIME`: files replayed by Braid's file replay source, which merges files by event time
  (ties: the file given first, then row order). In this order no trade is ever late.
- `FILE`: files one after another as given, rows in file order: an archive of the `trades`
  topic written in arrival order (out-of-order and late trades stay where they arrived).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np


class ArrivalOrder(StrEnum):
    EVENT_TIME = "event-time"
    FILE = "file"


def arrival_permutation(
    order: ArrivalOrder, source_index: np.ndarray, row_index: np.ndarray, timestamp_ms: np.ndarray
) -> np.ndarray:
    """Indices that put rows (any order) into arrival order."""
    if order is ArrivalOrder.FILE:
        return np.lexsort((row_index, source_index))
    return np.lexsort((row_index, source_index, timestamp_ms))

"""Time-ordered train / validation / test split with a gap between the parts (no leakage).

A label computed at time t looks ahead up to t + horizon; a row of a later part within that
distance would share information with it. So the parts are cut on the sorted distinct times
(every key at one time lands in the same part), and the last `gap` of the train and validation
parts is dropped: every validation time is more than `gap` after every train time, every test
time more than `gap` after every validation time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TimeSplit:
    """Row indices of each part, in time order."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def time_split(times: np.ndarray, *, gap: int, validation_fraction: float = 0.15,
               test_fraction: float = 0.15) -> TimeSplit:
    """Split rows by their `times` (any integer time unit; `gap` in the same unit).

    The fractions apply to distinct times. Raises ValueError when a part would be empty.
    """
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    if not (validation_fraction > 0 and test_fraction > 0
            and validation_fraction + test_fraction < 1):
        raise ValueError("validation_fraction and test_fraction must be > 0 with a sum below 1")
    times = np.asarray(times, dtype=np.int64)
    distinct = np.unique(times)
    n = len(distinct)
    validation_start = distinct[min(n - 1, int(n * (1 - validation_fraction - test_fraction)))]
    test_start = distinct[min(n - 1, int(n * (1 - test_fraction)))]
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    train = order[sorted_times < validation_start - gap]
    validation = order[(sorted_times >= validation_start) & (sorted_times < test_start - gap)]
    test = order[sorted_times >= test_start]
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        if len(part) == 0:
            raise ValueError(f"the {name} part is empty: {n} distinct times, gap {gap}, "
                             f"fractions {validation_fraction}/{test_fraction}")
    return TimeSplit(train=train, validation=validation, test=test)

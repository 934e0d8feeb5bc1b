"""The checker of the fault-injection tests: every message a faulted run emitted, against the
uninterrupted run's one value per key (`compare_history`: not only the last value per key, a
wrong value later corrected still counts as different), or, for topics whose keys are corrected
by design (the sensors features and predictions: a late input within grace publishes the key
again), each key's last message (`compare_final`)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class HistoryCheck:
    checked: int  # messages of the faulted run compared with the reference
    lost: int  # reference keys the faulted run never emitted
    unexpected: int  # messages whose key the reference does not have
    different: int  # messages whose value differs from the reference's
    identical_duplicates: int  # repeats of a key with the reference's value (allowed)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.unexpected or self.different)

    def __add__(self, other: HistoryCheck) -> HistoryCheck:
        """Two topics' checks of one run, together."""
        return HistoryCheck(self.checked + other.checked, self.lost + other.lost,
                            self.unexpected + other.unexpected, self.different + other.different,
                            self.identical_duplicates + other.identical_duplicates)


def compare_history(got: Mapping[K, Sequence[Any]], want: Mapping[K, Any],
                    same: Callable[[Any, Any], bool] = operator.eq) -> HistoryCheck:
    """`got`: every message of the faulted run, by key, in topic order; `want`: the
    uninterrupted run's value of each key; `same(got, want)` says whether a value matches."""
    checked = unexpected = different = duplicates = 0
    for key, values in got.items():
        checked += len(values)
        if key not in want:
            unexpected += len(values)
            continue
        matching = sum(bool(same(value, want[key])) for value in values)
        different += len(values) - matching
        duplicates += max(matching - 1, 0)
    lost = sum(key not in got for key in want)
    return HistoryCheck(checked, lost, unexpected, different, duplicates)


def compare_final(got: Mapping[K, Sequence[Any]], want: Mapping[K, Any],
                  same: Callable[[Any, Any], bool] = operator.eq) -> HistoryCheck:
    """`got`: every message of the faulted run, by key, in topic order; `want`: the
    uninterrupted run's final value of each key. `different` counts keys whose last message
    is not the reference's; earlier messages of a key (corrections, replays) are counted as
    `identical_duplicates` when they match and are otherwise allowed."""
    checked = unexpected = different = duplicates = 0
    for key, values in got.items():
        checked += len(values)
        if key not in want:
            unexpected += len(values)
            continue
        different += not same(values[-1], want[key])
        duplicates += sum(bool(same(value, want[key])) for value in values[:-1])
    lost = sum(key not in got for key in want)
    return HistoryCheck(checked, lost, unexpected, different, duplicates)

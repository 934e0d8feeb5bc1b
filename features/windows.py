"""Event-time window semantics shared by both engines.

Windows are tumbling, aligned to the Unix epoch (UTC), half-open `[start, start + size)`.
Lateness is decided per key (a pair, a client) in arrival order: a record is late when its
window has ended at least `grace_ms` before the largest event time already seen for the same key
(its stream time). Because the rule only looks at one key's own arrival sequence, the batch engine
can apply it to an archive in arrival order and drop exactly the records the speed layer dropped.

A window closes when its pair's stream time passes its end + grace, or when a closure record in
the `trades` log closes it: a quiet live pair's window is closed on idle by a closure record the
candle processor writes into the log, so history closes by event time alone and the batch,
reading the same log, drops exactly the trades the stream drops. Closure records
(`features.schemas.window_closure`) sit in the arrival order like records; :class:`Closures`
holds those of one sequence, :func:`closed_until_at` says which windows of each record's key
were closed when it arrived, and :func:`lateness` tells why a record is late
(:data:`LATE_BY_STREAM_TIME`, judged first, or :data:`CLOSED_BY_LOG`). No wall-clock decision
lives here: the candle processor decides when to write an idle closure record, and both engines
only read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str | int) -> int:
    """`"60s"`, `"5m"`, `"1h"`, `"1d"` or a number of milliseconds -> milliseconds."""
    if isinstance(text, int):
        value = text
    else:
        match = _DURATION.match(text)
        if match is None:
            raise ValueError(f"not a duration: {text!r} (use e.g. 60s, 5m, 1h, 1d)")
        value = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if value <= 0:
        raise ValueError(f"duration must be positive, got {text!r}")
    return value


def format_duration(ms: int) -> str:
    """The shortest exact label: 60000 -> '1m', 90000 -> '90s'."""
    for unit in ("d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True)
class EventTimeWindow:
    """A window of `size_ms` of event time whose results wait `grace_ms` for late records."""

    size_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        if self.size_ms <= 0 or self.grace_ms < 0:
            raise ValueError("window size must be positive and grace non-negative")

    @property
    def label(self) -> str:
        return format_duration(self.size_ms)


@dataclass(frozen=True)
class TumblingWindow(EventTimeWindow):
    """A tumbling event-time window of `size_ms`, accepting records up to `grace_ms` late."""

    def start_of(self, timestamp_ms: np.ndarray) -> np.ndarray:
        ts = np.asarray(timestamp_ms, dtype=np.int64)
        return ts - np.mod(ts, self.size_ms)

    def closes_at(self, window_start_ms: np.ndarray) -> np.ndarray:
        """Stream time at which a window is final: end + grace."""
        return np.asarray(window_start_ms, dtype=np.int64) + self.size_ms + self.grace_ms


NO_STREAM_TIME = -1
"""Stream time of a key that has seen no record yet (event times are positive)."""


def stream_time_before(
    key_codes: np.ndarray, timestamp_ms: np.ndarray, initial: np.ndarray
) -> np.ndarray:
    """For each record (in arrival order), the key's stream time just before it arrived.

    `key_codes` are small non-negative ints; `initial[code]` is the key's stream time before this
    batch (:data:`NO_STREAM_TIME` for a key never seen). Vectorized: a grouped running max.
    """
    n = len(timestamp_ms)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    order = np.argsort(key_codes, kind="stable")
    codes = key_codes[order]
    ts = np.asarray(timestamp_ms, dtype=np.int64)[order]
    first = np.r_[True, codes[1:] != codes[:-1]]
    # previous record's timestamp within the same key, or the key's initial stream time
    prev = np.empty(n, dtype=np.int64)
    prev[1:] = ts[:-1]
    prev[first] = initial[codes[first]]
    # grouped running max: offset each group so a global running max never crosses groups
    group = np.cumsum(first) - 1
    floor = np.minimum(prev.min(), ts.min())
    span = int(max(prev.max(), ts.max()) - floor) + 1
    shifted = (prev - floor) + group.astype(np.int64) * span
    running = np.maximum.accumulate(shifted) - group.astype(np.int64) * span + floor
    out = np.empty(n, dtype=np.int64)
    out[order] = running
    return out


def late_mask(
    window: TumblingWindow,
    key_codes: np.ndarray,
    timestamp_ms: np.ndarray,
    initial_stream_time: np.ndarray,
    closed_until: np.ndarray | None = None,
) -> np.ndarray:
    """True where a record arrives after its window closed (per-key stream time and grace).

    `closed_until[code]`, if given, is the end of the last window already closed for the key
    (by a closure record, :class:`Closures`); records of windows ending at or before it are
    late too.
    """
    closed_at = None if closed_until is None else closed_until[key_codes]
    return lateness(window, key_codes, timestamp_ms, initial_stream_time, closed_at) != ON_TIME


ON_TIME = 0
LATE_BY_STREAM_TIME = 1
"""The record's window ended at least `grace` before its key's stream time."""
CLOSED_BY_LOG = 2
"""The record's window was closed by a closure record that arrived before it."""


def lateness(
    window: TumblingWindow,
    key_codes: np.ndarray,
    timestamp_ms: np.ndarray,
    initial_stream_time: np.ndarray,
    closed_until_at: np.ndarray | None = None,
) -> np.ndarray:
    """Per record (arrival order), why it is late: :data:`ON_TIME`, :data:`LATE_BY_STREAM_TIME`
    (judged first), or :data:`CLOSED_BY_LOG` where its window ends at or before
    `closed_until_at[i]`, the end of its key's last closed window when it arrived
    (:func:`closed_until_at`)."""
    before = stream_time_before(key_codes, timestamp_ms, initial_stream_time)
    starts = window.start_of(timestamp_ms)
    out = np.zeros(len(starts), dtype=np.int8)
    late = window.closes_at(starts) <= before
    out[late] = LATE_BY_STREAM_TIME
    if closed_until_at is not None:
        out[~late & (starts + window.size_ms <= closed_until_at)] = CLOSED_BY_LOG
    return out


@dataclass(frozen=True)
class Closures:
    """The closure records (`features.schemas.window_closure`) of one arrival sequence (a Kafka
    partition, an archive file), as columns. Closure `j` closes, for every record of key
    `key_codes[j]` at a position after `positions[j]`, the key's windows of `window_ms[j]` (0:
    every duration) that contain an event time at or before `through_ms[j]`."""

    key_codes: np.ndarray  # int64
    positions: np.ndarray  # int64, same scale as the records' positions (e.g. Kafka offsets)
    window_ms: np.ndarray  # int64; 0: every duration
    through_ms: np.ndarray  # int64

    @classmethod
    def empty(cls) -> Closures:
        none = np.empty(0, dtype=np.int64)
        return cls(none, none, none, none)

    def __len__(self) -> int:
        return len(self.key_codes)

    def ends(self, window: TumblingWindow) -> np.ndarray:
        """Per closure: the end of the last `window`-sized window it closes (its key's windows
        ending at or before it are closed), :data:`NO_STREAM_TIME` where it is for another
        duration."""
        through = np.asarray(self.through_ms, dtype=np.int64)
        applies = (self.window_ms == 0) | (self.window_ms == window.size_ms)
        return np.where(applies, window.start_of(through) + window.size_ms, NO_STREAM_TIME)


def closed_until_at(
    window: TumblingWindow,
    key_codes: np.ndarray,
    positions: np.ndarray,
    timestamp_ms: np.ndarray,
    initial_closed_until: np.ndarray,
    closures: Closures,
) -> tuple[np.ndarray, np.ndarray]:
    """Per record: the end of its key's last closed window when it arrived (the key's
    `initial_closed_until` raised by every closure of the key at a smaller position), and the
    index of the closure that closed the record's own window (-1: none, or closed before).

    Vectorized per key that has closures (few: closures are rare next to trades)."""
    codes = np.asarray(key_codes, dtype=np.int64)
    closed = np.asarray(initial_closed_until, dtype=np.int64)[codes]
    initial = closed.copy()
    closer = np.full(len(codes), -1, dtype=np.int64)
    if not len(closures) or not len(codes):
        return closed, closer
    ends = closures.ends(window)
    record_ends = window.start_of(timestamp_ms) + window.size_ms
    for code in np.unique(closures.key_codes[ends != NO_STREAM_TIME]):
        mine = np.flatnonzero((closures.key_codes == code) & (ends != NO_STREAM_TIME))
        mine = mine[np.argsort(closures.positions[mine], kind="stable")]
        running = np.maximum.accumulate(ends[mine])
        records = np.flatnonzero(codes == code)
        # closures of the key before each record: those at a smaller position
        seen = np.searchsorted(closures.positions[mine], positions[records], side="left")
        has = seen > 0
        upto = np.where(has, running[np.maximum(seen - 1, 0)], NO_STREAM_TIME)
        closed[records] = np.maximum(closed[records], upto)
        # the first closure whose running end reaches the record's window end, if it came first
        first = np.searchsorted(running, record_ends[records], side="left")
        by_closure = has & (first < seen) & (initial[records] < record_ends[records])
        closer[records[by_closure]] = mine[first[by_closure]]
    return closed, closer


@dataclass(frozen=True)
class SlidingWindow(EventTimeWindow):
    """A per-record sliding event-time window: for a record at `t`, the records of the same key
    with event time in the half-open interval `(t - size_ms, t]`.

    The result for a record at `t` is final once its key's stream time reaches `t + grace_ms`,
    or (with `max_lateness_ms`) once the stream time of its arrival sequence as a whole (a
    topic-partition: the largest event time of any key's record so far) reaches
    `t + max_lateness_ms`: every record of its window that is not late has arrived by then. A
    record is late (see :func:`sliding_lateness`) exactly when it would change a result already
    final, so any arrival order within those bounds gives the same final results. (The sensor
    window processor emits each result at once and a correction when a record within grace
    changes it.)

    The second bound is what keeps state bounded when one key goes quiet: a key whose records
    stop keeps its own stream time, but the sequence's moves on, so its results become final
    and its state can go, by event time and log order alone (no wall clock).
    """

    max_lateness_ms: int | None = None  # None: only the key's own stream time bounds lateness

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_lateness_ms is not None and self.max_lateness_ms < self.grace_ms:
            raise ValueError("max lateness must be at least the grace")

    def final_until(self, stream_time_ms: np.ndarray,
                    partition_time_ms: np.ndarray | None = None) -> np.ndarray:
        """Per key: results of records with event time <= this are final: the larger of
        (stream time - grace) and, with a max lateness and `partition_time_ms` (per key, the
        stream time of its topic-partition), partition time - max lateness; keys with neither
        keep :data:`NO_STREAM_TIME`."""
        st = np.asarray(stream_time_ms, dtype=np.int64)
        out = np.where(st == NO_STREAM_TIME, NO_STREAM_TIME, st - self.grace_ms)
        if partition_time_ms is not None and self.max_lateness_ms is not None:
            pt = np.asarray(partition_time_ms, dtype=np.int64)
            bound = np.where(pt == NO_STREAM_TIME, NO_STREAM_TIME, pt - self.max_lateness_ms)
            out = np.maximum(out, bound)  # event times are positive: NO_STREAM_TIME is least
        return out


LATE_BY_PARTITION_TIME = 3
"""The record lies `max_lateness` or more behind its topic-partition's stream time."""


def sliding_lateness(
    window: SlidingWindow,
    key_codes: np.ndarray,
    timestamp_ms: np.ndarray,
    initial_stream_time: np.ndarray,
    partition_codes: np.ndarray | None = None,
    initial_partition_time: np.ndarray | None = None,
) -> np.ndarray:
    """Per record (arrival order), why it is late: :data:`ON_TIME`,
    :data:`LATE_BY_STREAM_TIME` (`t + grace <=` its key's stream time just before it, judged
    first) or :data:`LATE_BY_PARTITION_TIME` (`t + max_lateness <=` the stream time of its
    partition just before it: the largest event time of any key's record before it there).

    `partition_codes` (small non-negative ints, e.g. Kafka partition numbers) and
    `initial_partition_time[code]` apply the second rule; without them, or without a max
    lateness, only the first. Both stream times count every record before it, late or not: a
    record late by one rule lies behind the other's stream time too, so it moves neither.
    Nothing but the arrival sequence decides (no wall clock), so a batch reading the same log in
    the same order rejects the same records.
    """
    ts = np.asarray(timestamp_ms, dtype=np.int64)
    before = stream_time_before(key_codes, ts, initial_stream_time)
    out = np.zeros(len(ts), dtype=np.int8)
    late = (before != NO_STREAM_TIME) & (ts + window.grace_ms <= before)
    out[late] = LATE_BY_STREAM_TIME
    if (window.max_lateness_ms is not None and partition_codes is not None
            and initial_partition_time is not None and len(ts)):
        codes = np.asarray(partition_codes, dtype=np.int64)
        partition_before = stream_time_before(codes, ts, initial_partition_time)
        behind = ((partition_before != NO_STREAM_TIME)
                  & (ts + window.max_lateness_ms <= partition_before) & ~late)
        out[behind] = LATE_BY_PARTITION_TIME
    return out


def sliding_late_mask(
    window: SlidingWindow,
    key_codes: np.ndarray,
    timestamp_ms: np.ndarray,
    initial_stream_time: np.ndarray,
    partition_codes: np.ndarray | None = None,
    initial_partition_time: np.ndarray | None = None,
) -> np.ndarray:
    """True where a record arrives after results it belongs to were final
    (:func:`sliding_lateness` is not :data:`ON_TIME`). With the key's stream time alone this is
    the rule of :func:`late_mask` with the window ending at the record itself."""
    return sliding_lateness(window, key_codes, timestamp_ms, initial_stream_time,
                            partition_codes, initial_partition_time) != ON_TIME

"""FA, FI, FD: the sliding-window features of SZ, as pure numpy over sorted readings.

Definitions, for an SZ reading `i` of a client at event time `t_i` (milliseconds), with
`W = SENSOR_WINDOW.size_ms` (10 minutes):

- the **window** of `i` is the client's SZ readings with event time in `(t_i - W, t_i]`
  (open at the start, closed at the end: it always holds `i` itself, and readings sharing `t_i`);
- readings are ordered by (event time, value): the order is a property of the data, never of
  arrival, so any arrival order gives the same windows;
- **FA** (average): the arithmetic mean of the window's values;
- **FI** (integral): the trapezoid area under the piecewise-linear curve through the window's
  readings, over event time in **seconds**: sum of `(t_{j+1} - t_j) / 1000 * (v_j + v_{j+1}) / 2`
  over consecutive readings of the window (0 for a single reading; no extrapolation to the
  window's start);
- **FD** (derivative): `(v_last - v_first) / ((t_last - t_first) / 1000)`, the change per second
  between the window's first and last readings; **0.0** when the window spans no time (a single
  reading, or readings sharing one timestamp): no change has been observed.

Exactness across engines: each window's sums are accumulated sequentially, in window order,
starting from the window's first reading (never as differences of running totals), so the values
depend only on the window's own readings, bit for bit, whether the stream computes them over a
buffer of recent readings or the batch layer over years of history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.windows import SlidingWindow

WINDOW_MS = 10 * 60 * 1000
SENSOR_WINDOW = SlidingWindow(WINDOW_MS)  # grace is a deployment setting: see sensor_window
DEFAULT_GRACE_MS = 5_000  # the windows' default grace (`braid sensors windows --grace`)
DEFAULT_MAX_LATENESS_MS = 2 * 3_600_000
"""The default max lateness (`BRAID_MAX_LATENESS`, `--max-lateness`): a reading this far or
further behind its topic-partition's stream time is late, whatever its client's own stream time.
It bounds what the operators hold for a client one of whose inputs stopped (about this much of
its history). It must exceed the event-time skew limit (`features.event_time`, default 1 h): a
reading stamped that far ahead of its Kafka timestamp is still accepted and moves its partition's
stream time, and readings of the other clients on time must stay within the max lateness of it."""
EMISSION = (
    "Each accepted SZ reading's FA, FI, FD go out in the poll that processes it, and again as a "
    "correction when a reading within grace lands in its window; they are final once the "
    "client's stream time passes the reading's time plus grace, or its partition's stream time "
    "passes the reading's time plus the max lateness, decided by event time alone, never by the "
    "wall clock."
)
"""When the stream's features are out and final, in one sentence (READMEs quote it)."""


def check_max_lateness(max_lateness_ms: int | None, max_event_time_skew_ms: int) -> None:
    """Raise unless the max lateness exceeds the event-time skew limit: a reading may be stamped
    up to that limit ahead of its Kafka timestamp and still move its partition's stream time,
    and with a max lateness at or below it, one client's fast clock would make the readings on
    time of every other client of its partition late."""
    if max_lateness_ms is not None and max_lateness_ms <= max_event_time_skew_ms:
        raise ValueError(f"max lateness ({max_lateness_ms} ms) must exceed the event-time skew "
                         f"limit ({max_event_time_skew_ms} ms)")


def sensor_window(grace_ms: int,
                  max_lateness_ms: int | None = DEFAULT_MAX_LATENESS_MS) -> SlidingWindow:
    """The 10-minute SZ window with the deployment's grace and max lateness (None: no bound by
    the partition's stream time)."""
    return SlidingWindow(WINDOW_MS, grace_ms, max_lateness_ms)


@dataclass(frozen=True)
class WindowFeatures:
    """Features of the target readings, aligned with the `targets` passed in."""

    fa: np.ndarray  # float64
    fi: np.ndarray  # float64
    fd: np.ndarray  # float64
    count: np.ndarray  # int64: readings in the window


def sort_readings(key_codes: np.ndarray, timestamp_ms: np.ndarray,
                  values: np.ndarray) -> np.ndarray:
    """The permutation that orders readings by (key, event time, value): the canonical order."""
    return np.lexsort((values, timestamp_ms, key_codes))


def window_features(
    key_codes: np.ndarray,
    timestamp_ms: np.ndarray,
    values: np.ndarray,
    targets: np.ndarray | None = None,
    window_ms: int = WINDOW_MS,
) -> WindowFeatures:
    """FA, FI, FD for the readings at indices `targets` (default: all).

    Inputs must be sorted by (key, timestamp_ms, value) (see :func:`sort_readings`) and hold,
    for every target, all readings of its window. `key_codes` are non-negative ints.
    """
    codes = np.asarray(key_codes, dtype=np.int64)
    ts = np.asarray(timestamp_ms, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    idx = np.arange(len(ts)) if targets is None else np.asarray(targets, dtype=np.int64)
    if len(ts) == 0:
        return keyed_window_features(ts, v, idx, window_ms, 1)
    # one sortable int64 per reading: key blocks spaced wider than any timestamp span + window
    t0 = int(ts.min())
    span = int(ts.max()) - t0 + window_ms + 1
    if int(codes.max()) >= (np.iinfo(np.int64).max // span) - 1:
        raise OverflowError("too many keys for one call over this time span")
    return keyed_window_features(codes * span + (ts - t0), v, idx, window_ms, span)


def keyed_window_features(key: np.ndarray, values: np.ndarray, targets: np.ndarray,
                          window_ms: int, span: int) -> WindowFeatures:
    """:func:`window_features` over readings keyed `client code * span + event time` (sorted
    by (key, value); event times in [0, span) after any shift): the form the stream's buffer
    holds them in, so it needs no per-reading client or time column. Within a client, key
    differences are event-time differences, which is all FI and FD use; a window's start is
    clamped to its client's block, so `span` need not exceed the window."""
    if len(targets) == 0:
        empty = np.empty(0, dtype=np.float64)
        return WindowFeatures(empty, empty.copy(), empty.copy(), np.empty(0, dtype=np.int64))
    v = values
    target_key = key[targets]
    block_start = (target_key // span) * span
    hi = np.searchsorted(key, target_key, side="right")  # one past the last in window
    # (t - W, t], never before the client's block: searching right of block start - 1 finds
    # its first reading, at whatever time
    lo = np.searchsorted(key, np.maximum(target_key - window_ms, block_start - 1), side="right")
    count = hi - lo
    # pair areas: area[j] between readings j and j+1 (same key), in value x seconds
    area = np.zeros(len(key), dtype=np.float64)
    if len(key) > 1:
        area[:-1] = (key[1:] - key[:-1]) / 1000.0 * (v[:-1] + v[1:]) / 2.0
    fa_sum = _sequential_window_sums(v, lo, count)
    fi = _sequential_window_sums(area, lo, count - 1)  # pairs lo..hi-2
    first, last = lo, hi - 1
    elapsed_s = (key[last] - key[first]) / 1000.0
    spans_time = elapsed_s > 0
    fd = np.zeros(len(targets), dtype=np.float64)
    fd[spans_time] = (v[last] - v[first])[spans_time] / elapsed_s[spans_time]
    return WindowFeatures(fa_sum / count, fi, fd, count.astype(np.int64))


def _sequential_window_sums(x: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """`sum(x[start[i] : start[i] + length[i]])`, added left to right from `x[start[i]]`.

    Vectorized over windows: step k adds the k-th element of every window longer than k
    (windows sorted by length, longest first, so the active ones are a prefix).
    """
    n = len(start)
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    order = np.argsort(-length, kind="stable")
    s, lengths = start[order], length[order]
    acc = np.zeros(n, dtype=np.float64)
    longest = int(lengths[0]) if n else 0
    # active[k]: how many windows are longer than k
    active = np.searchsorted(-lengths, -np.arange(longest), side="left")
    for k in range(longest):
        m = int(active[k])
        acc[:m] += x[s[:m] + k]
    out[order] = acc
    return out

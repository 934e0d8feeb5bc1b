"""The vector of an event: the one rule the join, the training rows and the Spark backfill share.

:data:`RULE`, in one sentence (the READMEs and docstrings quote it as it is):

    The vector of an event of client c at event time t (an SX, SY or SZ reading) is c's SX and
    SY as of t (the reading with the latest event time at or before t, the largest value at a
    tie) and the FA, FI, FD bins of the 10-minute window ending at c's latest SZ reading at or
    before t, counting only readings not late (per topic, in log order: late is grace or more
    behind the client's stream time, or the max lateness or more behind the partition's).

Details, all properties of the events and the topics' logs, never of their arrival at a
processor:

- **events**: every accepted SX, SY and SZ reading is an event, identified by (client, event
  time, trigger = its sensor); readings sharing that identity are one event (they get one
  vector: the tie rule makes it so);
- **lateness** (`features.windows.sliding_lateness`, in each topic's log order: a client lives
  on one partition, `streaming.partitioning.partition_for(client, partitions)`): a reading at t
  is late when `t + grace <=` its client's stream time in its own topic just before it, or when
  `t + max lateness <=` its topic-partition's stream time just before it (the largest event
  time of any client's reading before it in that partition); late readings are no events and
  count in no vector. The second bound (`window_math.DEFAULT_MAX_LATENESS_MS`, 2 h) is what lets
  the stream forget a client one of whose inputs stopped: its answers become final as its
  partition moves on;
- an event has a vector only when all five fields exist (an SX and an SY at or before t, an SZ
  reading at or before t): the stream predicts exactly on those events, training has a row for
  exactly those.

Everything here works on **composite keys** `client code * KEY_SPAN + event time` (one sortable
int64 per (client, time); event times are below `MAX_TIMESTAMP_MS` = `KEY_SPAN`), so an as-of
lookup for many events of many clients is one `searchsorted`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.partitioning import partitions_of
from features.sensors.binning import BinEdges
from features.sensors.schemas import FEATURES, MAX_TIMESTAMP_MS, SENSORS, VECTOR_FIELDS
from features.sensors.window_math import (
    DEFAULT_MAX_LATENESS_MS,
    WINDOW_MS,
    sensor_window,
    sort_readings,
    window_features,
)
from features.windows import NO_STREAM_TIME, sliding_late_mask

RULE = (
    "The vector of an event of client c at event time t (an SX, SY or SZ reading) is c's SX "
    "and SY as of t (the reading with the latest event time at or before t, the largest value "
    "at a tie) and the FA, FI, FD bins of the 10-minute window ending at c's latest SZ reading "
    "at or before t, counting only readings not late (per topic, in log order: late is grace "
    "or more behind the client's stream time, or the max lateness or more behind the "
    "partition's)."
)
KEY_SPAN = MAX_TIMESTAMP_MS
MAX_CLIENT_CODES = np.iinfo(np.int64).max // KEY_SPAN - 1
TRIGGERS = SENSORS  # an event's trigger is its sensor; trigger codes index this tuple
MISSING = -1  # a field without a value (no reading at or before the event's time)


def composite_keys(codes: np.ndarray, timestamp_ms: np.ndarray) -> np.ndarray:
    """`code * KEY_SPAN + timestamp_ms`, one sortable int64 per (client, event time)."""
    return np.asarray(codes, dtype=np.int64) * KEY_SPAN + np.asarray(timestamp_ms,
                                                                     dtype=np.int64)


def latest_at_or_before(sorted_keys: np.ndarray, query_keys: np.ndarray) -> np.ndarray:
    """Per query key, the index of the last entry of `sorted_keys` at or before it of the same
    client, or -1. Entries sharing a key must be sorted by value: the last is the largest."""
    query = np.asarray(query_keys, dtype=np.int64)
    if len(sorted_keys) == 0 or len(query) == 0:
        return np.full(len(query), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_keys, query, side="right") - 1
    found = pos >= 0
    found[found] = sorted_keys[pos[found]] // KEY_SPAN == query[found] // KEY_SPAN
    return np.where(found, pos, -1).astype(np.int64)


def vectors_as_of(event_keys: np.ndarray,
                  sx_keys: np.ndarray, sx_values: np.ndarray,
                  sy_keys: np.ndarray, sy_values: np.ndarray,
                  sz_keys: np.ndarray, sz_bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rule over sorted histories: per event key, the vector in `VECTOR_FIELDS` order
    (:data:`MISSING` where a field has no value) and the index of the SZ reading it took its
    bins from (-1 if none).

    `sx_keys`/`sy_keys`: composite keys sorted by (key, value); `sz_keys`: the composite keys
    of the SZ readings whose three bins are known, sorted and unique, with `sz_bins` (n, 3) the
    FA, FI, FD bins of each (the window ending at that reading)."""
    n = len(event_keys)
    vectors = np.full((n, len(VECTOR_FIELDS)), MISSING, dtype=np.int64)
    for column, (keys, values) in enumerate(((sx_keys, sx_values), (sy_keys, sy_values))):
        at = latest_at_or_before(keys, event_keys)
        hit = at >= 0
        vectors[hit, column] = values[at[hit]]
    at = latest_at_or_before(sz_keys, event_keys)
    hit = at >= 0
    vectors[hit, 2:] = sz_bins[at[hit]]
    return vectors, at


def complete(vectors: np.ndarray) -> np.ndarray:
    """Rows with all five fields: the events the stream predicts on."""
    return (vectors != MISSING).all(axis=1)


@dataclass(frozen=True)
class EventVectors:
    """One row per event with a vector, sorted by (client, event time, trigger)."""

    clients: np.ndarray  # (n,) object
    timestamps_ms: np.ndarray  # (n,) int64
    triggers: np.ndarray  # (n,) object: SX, SY or SZ
    vectors: np.ndarray  # (n, 5) int64, VECTOR_FIELDS order
    edges_version: str
    #: per input row, the row here its event became (-1: late, or no vector)
    row_of_input: np.ndarray

    def __len__(self) -> int:
        return len(self.timestamps_ms)


def accepted_in_log_order(codes: np.ndarray, timestamp_ms: np.ndarray, grace_ms: int,
                          clients: int, partitions: np.ndarray | None = None,
                          max_lateness_ms: int | None = None) -> np.ndarray:
    """The readings of one topic, in log order, that are not late: per client (`codes` <
    `clients`) and, with `max_lateness_ms`, per topic-partition (`partitions`: each reading's
    partition number; None: all on one)."""
    window = sensor_window(grace_ms, max_lateness_ms)
    initial = np.full(clients, NO_STREAM_TIME, dtype=np.int64)
    if partitions is None:
        partitions = np.zeros(len(codes), dtype=np.int64)
    partitions = np.asarray(partitions, dtype=np.int64)
    top = int(partitions.max()) + 1 if len(partitions) else 1
    return ~sliding_late_mask(window, codes, timestamp_ms, initial, partitions,
                              np.full(top, NO_STREAM_TIME, dtype=np.int64))


def event_vectors(events: pa.Table, edges: BinEdges, grace_ms: int,
                  window_ms: int = WINDOW_MS,
                  max_lateness_ms: int | None = DEFAULT_MAX_LATENESS_MS,
                  partition_count: int | None = None) -> EventVectors:
    """The rule applied to a table of readings (columns `sensor`, `client`, `timestamp_ms`,
    `value`): the table's row order is each topic's log order, which decides lateness, with
    `grace_ms` and `max_lateness_ms` (the stream's settings).

    Each row's topic-partition: the table's `partition` column if it has one (the archive's
    Kafka partition), else `features.partitioning.partition_for(client, partition_count)` (the
    stream's topics have `partition_count` partitions), else (None) one partition for all.

    SZ features are computed from the accepted SZ readings (`window_math`) and binned with
    `edges`; readings sharing a client and time share their window and features."""
    names, client_codes = np.unique(np.asarray(events["client"].to_pylist(), dtype=object),
                                    return_inverse=True)
    client_codes = client_codes.astype(np.int64)
    if len(names) > MAX_CLIENT_CODES:
        raise OverflowError(f"more than {MAX_CLIENT_CODES} clients in one call")
    sensors = np.asarray(events["sensor"].to_pylist(), dtype=object)
    ts_all = events["timestamp_ms"].to_numpy().astype(np.int64)
    values_all = pc.cast(events["value"], pa.float64()).to_numpy(zero_copy_only=False)
    if "partition" in events.column_names:
        part_all = events["partition"].to_numpy().astype(np.int64)
    elif partition_count is not None:
        part_all = np.asarray(partitions_of(events["client"].to_pylist(), partition_count),
                              dtype=np.int64)
    else:
        part_all = np.zeros(len(ts_all), dtype=np.int64)
    accepted = np.zeros(len(ts_all), dtype=bool)
    for sensor in SENSORS:
        rows = np.flatnonzero(sensors == sensor)
        accepted[rows] = accepted_in_log_order(client_codes[rows], ts_all[rows], grace_ms,
                                               len(names), part_all[rows], max_lateness_ms)

    def history(sensor: str) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero((sensors == sensor) & accepted)
        keys = composite_keys(client_codes[rows], ts_all[rows])
        values = values_all[rows].astype(np.int64)
        order = np.lexsort((values, keys))
        return keys[order], values[order]

    sx_keys, sx_values = history("SX")
    sy_keys, sy_values = history("SY")
    sz_keys, sz_bins = sz_features(client_codes, ts_all, values_all,
                                   (sensors == "SZ") & accepted, edges, window_ms)

    # the events: accepted readings, one per (client, time, trigger)
    trigger_codes = np.full(len(ts_all), -1, dtype=np.int64)
    for code, sensor in enumerate(TRIGGERS):
        trigger_codes[sensors == sensor] = code
    rows = np.flatnonzero(accepted)
    keys = composite_keys(client_codes[rows], ts_all[rows])
    order = np.lexsort((trigger_codes[rows], keys))
    keys, triggers, rows = keys[order], trigger_codes[rows][order], rows[order]
    first = np.r_[True, (keys[1:] != keys[:-1]) | (triggers[1:] != triggers[:-1])]
    event_of_row = np.cumsum(first) - 1  # the event each accepted row belongs to
    keys, triggers = keys[first], triggers[first]
    vectors, _ = vectors_as_of(keys, sx_keys, sx_values, sy_keys, sy_values, sz_keys, sz_bins)
    kept = complete(vectors)
    position = np.where(kept, np.cumsum(kept) - 1, -1)
    row_of_input = np.full(len(ts_all), -1, dtype=np.int64)
    row_of_input[rows] = position[event_of_row]
    return EventVectors(
        clients=names[keys[kept] // KEY_SPAN],
        timestamps_ms=keys[kept] % KEY_SPAN,
        triggers=np.asarray(TRIGGERS, dtype=object)[triggers[kept]],
        vectors=vectors[kept],
        edges_version=edges.version,
        row_of_input=row_of_input,
    )


def sz_features(client_codes: np.ndarray, timestamp_ms: np.ndarray, values: np.ndarray,
                accepted: np.ndarray, edges: BinEdges, window_ms: int = WINDOW_MS
                ) -> tuple[np.ndarray, np.ndarray]:
    """The accepted SZ readings' FA, FI, FD bins: (sorted unique composite keys, bins (n, 3))."""
    rows = np.flatnonzero(accepted)
    codes, ts, v = client_codes[rows], timestamp_ms[rows], values[rows]
    order = sort_readings(codes, ts, v)
    codes, ts, v = codes[order], ts[order], v[order]
    keys = composite_keys(codes, ts)
    last = np.r_[keys[1:] != keys[:-1], True] if len(keys) else np.empty(0, dtype=bool)
    targets = np.flatnonzero(last)  # one reading per (client, time): they share the window
    feats = window_features(codes, ts, v, targets, window_ms)
    columns = {"FA": feats.fa, "FI": feats.fi, "FD": feats.fd}
    bins = np.empty((len(targets), len(FEATURES)), dtype=np.int64)
    for k, name in enumerate(FEATURES):
        bins[:, k] = edges.bin(name, columns[name])
    return keys[targets], bins


VECTOR_TABLE_SCHEMA = pa.schema([
    pa.field("client", pa.string(), nullable=False),
    pa.field("timestamp_ms", pa.int64(), nullable=False),
    pa.field("trigger", pa.string(), nullable=False),
    *(pa.field(name if name in ("SX", "SY") else f"{name}_bin", pa.int64(), nullable=False)
      for name in VECTOR_FIELDS),
    pa.field("edges_version", pa.string(), nullable=False),
])
"""The offline table of event vectors (one row per event with a vector): what the Spark
backfill writes and training reads."""


def vector_table(rows: EventVectors) -> pa.Table:
    """`rows` as a table of :data:`VECTOR_TABLE_SCHEMA`."""
    n = len(rows)
    return pa.table({
        "client": pa.array(rows.clients.tolist(), pa.string()),
        "timestamp_ms": pa.array(rows.timestamps_ms, pa.int64()),
        "trigger": pa.array(rows.triggers.tolist(), pa.string()),
        **{name: pa.array(rows.vectors[:, k], pa.int64())
           for k, name in enumerate(VECTOR_TABLE_SCHEMA.names[3:3 + len(VECTOR_FIELDS)])},
        "edges_version": pa.array([rows.edges_version] * n, pa.string()),
    }, schema=VECTOR_TABLE_SCHEMA)

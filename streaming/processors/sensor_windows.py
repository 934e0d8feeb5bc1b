"""The sensor window operator: SZ readings -> window features FA, FI, FD per reading.

For each client it keeps the stream time (largest SZ event time seen), the emitted horizon
(features of readings with event time <= it were emitted) and a buffer of the client's accepted
readings with event time > horizon - window (all a future result can need).

- A reading's features are emitted once its client's stream time reaches `t + grace`
  (`features.windows.SlidingWindow`), or on idleness: a client quiet for `idle_timeout_ms` of
  wall clock gets its pending readings with `t + grace <= now` emitted. Each feature row goes
  to its topic (FA, FI, FD) keyed by client, identified by (client, feature, timestamp_ms).
- A reading is late (dead letter) when `t + grace <= ` the client's stream time before it, or
  `t <=` its emitted horizon: it could only change results already emitted. Any arrival order
  within grace therefore gives the same features.
- Commit offset of a partition: the earliest offset of its readings still in the buffer (else
  its next offset), so a restart rebuilds the buffer from the log. Readings no longer needed are
  dropped in bulk (at each checkpoint, or once enough piled up), so the buffer stays sorted
  without a re-sort per batch.

Replay after a restart (the candle operator's pattern, adapted to sliding windows whose old
readings are still context): a partition's checkpoint holds its clients' stream times and
horizons, the next offset, the commit offset it went with (`needed_from`) and the offsets
rejected as late since then. Replayed messages (below the checkpointed next offset) are not
judged again: those below `needed_from` or rejected before are skipped, the others go back into
the buffer; no feature at or below a horizon is emitted twice, so the replay decides exactly as
the first run did.

Vectorized across partitions: the operators of one processor share a :class:`SensorWindowGroup`
(clients never span partitions), and `process_many` handles one poll's batches of every
partition in one pass, so the cost per poll does not grow with the number of partitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from features.event_time import DEFAULT_MAX_EVENT_TIME_SKEW_MS
from features.sensors.binning import BinEdges
from features.sensors.schemas import FEATURES, MAX_TIMESTAMP_MS, SENSOR_SCHEMA_VERSION
from features.sensors.window_math import window_features
from features.windows import NO_STREAM_TIME, SlidingWindow, sliding_late_mask
from streaming.processors.sensor_decoding import decode_readings
from streaming.runtime.key_codes import KeyCodes
from streaming.runtime.operator import PartitionOperator, Snapshot, process_by_group
from streaming.runtime.records import (
    DeadLetter,
    Emission,
    InputBatch,
    OutputBatch,
    merged_timestamps,
)

SNAPSHOT_VERSION = 1
SMALL_EMIT = 128  # below this many rows, orjson per row beats one polars pass
KEY_SPAN = MAX_TIMESTAMP_MS  # buffer sort key: client code * KEY_SPAN + event time
MAX_CLIENTS = np.iinfo(np.int64).max // KEY_SPAN - 1
PRUNE_MIN = 4_096
OFFSET_SPAN = 1 << 40  # (partition, offset) as one int: partition * OFFSET_SPAN + offset


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The concatenation of `arange(lo[i], hi[i])` over i (empty ranges allowed)."""
    lengths = np.maximum(hi - lo, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.repeat(lo - (ends - lengths), lengths) + np.arange(total)


@dataclass(frozen=True)
class SensorWindowConfig:
    window: SlidingWindow
    edges: BinEdges
    output_topics: dict[str, str]  # feature name (FA, FI, FD) -> topic
    idle_timeout_ms: int = 10_000
    # how far a reading's event time may lie ahead of its Kafka timestamp (features.event_time)
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS


@dataclass
class _Partition:
    """Replay bookkeeping of one partition (see the module docstring)."""

    position: int | None = None  # next offset to process, once consuming
    replay_until: int = 0
    needed_from: int = 0
    late_offsets: set[int] = field(default_factory=set)


class SensorWindowGroup:
    """The state of every partition one processor owns, as flat arrays over clients."""

    def __init__(self, config: SensorWindowConfig) -> None:
        self.config = config
        self.clients = KeyCodes()
        self.client_partition = np.empty(0, dtype=np.int64)
        self.stream_time = np.empty(0, dtype=np.int64)
        self.emitted_until = np.empty(0, dtype=np.int64)
        self.last_arrival_ms = np.empty(0, dtype=np.int64)  # -1 until the first tick
        # the buffer, sorted by (client, timestamp, value); key = client * KEY_SPAN + ts
        self.buf_key = np.empty(0, dtype=np.int64)
        self.buf_code = np.empty(0, dtype=np.int64)
        self.buf_ts = np.empty(0, dtype=np.int64)
        self.buf_value = np.empty(0, dtype=np.float64)
        self.buf_offset = np.empty(0, dtype=np.int64)
        self.buf_partition = np.empty(0, dtype=np.int64)
        self._stale = 0  # buffered readings no future result needs, not yet dropped
        self.partitions: dict[int, _Partition] = {}
        self._lows: dict[int, int] | None = None  # per partition: lowest buffered offset

    # --- partitions coming and going ---------------------------------------------------------
    def open(self, partition: int) -> None:
        """Start a partition afresh (assignment): forget anything held for it."""
        self.close(partition)
        self.partitions[partition] = _Partition()

    def close(self, partition: int) -> None:
        """Drop a partition's clients' state and readings (revocation)."""
        self.partitions.pop(partition, None)
        mine = self.client_partition == partition
        if mine.any():
            self.stream_time[mine] = NO_STREAM_TIME
            self.emitted_until[mine] = NO_STREAM_TIME
            self.last_arrival_ms[mine] = -1
            self.client_partition[mine] = -1
        self._keep(self.buf_partition != partition)

    def _grow(self, new: int) -> None:
        if new:
            fill = np.full(new, NO_STREAM_TIME, dtype=np.int64)
            self.stream_time = np.r_[self.stream_time, fill]
            self.emitted_until = np.r_[self.emitted_until, fill]
            self.last_arrival_ms = np.r_[self.last_arrival_ms, np.full(new, -1, dtype=np.int64)]
            self.client_partition = np.r_[self.client_partition, np.full(new, -1, np.int64)]

    def _keep(self, keep: np.ndarray) -> None:
        if not keep.all():
            self.buf_key, self.buf_code = self.buf_key[keep], self.buf_code[keep]
            self.buf_ts, self.buf_value = self.buf_ts[keep], self.buf_value[keep]
            self.buf_offset, self.buf_partition = self.buf_offset[keep], self.buf_partition[keep]
        self._lows = None

    # --- processing --------------------------------------------------------------------------
    def process_many(self, work: Sequence[tuple[int, InputBatch]], now_ms: int) -> Emission:
        """One poll's batches (partition, batch) of the SZ topic, all at once."""
        work = [(p, b) for p, b in work if len(b)]
        if not work:
            return Emission()
        self._lows = None
        merged = InputBatch(
            work[0][1].topic, -1, np.concatenate([b.offsets for _, b in work]),
            [k for _, b in work for k in b.keys], [v for _, b in work for v in b.values],
            merged_timestamps([b for _, b in work]))
        row_partition = np.repeat([p for p, _ in work], [len(b) for _, b in work])
        for p, b in work:
            self.partitions[p].position = int(b.offsets[-1]) + 1
        top = max(self.partitions) + 1
        replay_until = np.zeros(top, dtype=np.int64)
        needed_from = np.zeros(top, dtype=np.int64)
        for p, state in self.partitions.items():
            replay_until[p], needed_from[p] = state.replay_until, state.needed_from
        decoded = decode_readings(merged, "SZ", self.config.max_event_time_skew_ms)
        emission = Emission(dead_letters=self._invalid_letters(merged, row_partition,
                                                               decoded.reasons, replay_until))
        table = decoded.table
        if table.num_rows == 0:
            return emission
        valid = decoded.reasons == None  # noqa: E711 - elementwise
        part = row_partition[valid]
        codes, new = self.clients.encode(table["client"].to_pylist())
        if new and int(codes.max()) >= MAX_CLIENTS:
            raise OverflowError(f"more than {MAX_CLIENTS} clients in one processor")
        self._grow(new)
        self.client_partition[codes] = part
        ts = table["timestamp_ms"].to_numpy()
        values = table["value"].to_numpy()
        offsets = decoded.offsets
        replayed = offsets < replay_until[part]
        skip = replayed & (offsets < needed_from[part])
        if replayed.any():
            rejected = np.fromiter((p * OFFSET_SPAN + o for p, s in self.partitions.items()
                                    for o in s.late_offsets), np.int64)
            skip |= replayed & np.isin(part * OFFSET_SPAN + offsets, rejected)
        fresh = ~replayed
        late = np.zeros(len(ts), dtype=bool)
        if fresh.any():
            late[fresh] = sliding_late_mask(self.config.window, codes[fresh], ts[fresh],
                                            self.stream_time, self.emitted_until)
        if late.any():
            emission.dead_letters.extend(self._late_letters(
                merged, row_partition, np.flatnonzero(valid)[late]))
            for p, o in zip(part[late].tolist(), offsets[late].tolist(), strict=True):
                self.partitions[p].late_offsets.add(o)
        accept = ~skip & ~late
        self._append(codes[accept], ts[accept], values[accept], offsets[accept], part[accept])
        touched = np.unique(codes)
        np.maximum.at(self.stream_time, codes, ts)
        self.last_arrival_ms[touched] = now_ms
        final_until = self.emitted_until.copy()
        final_until[touched] = np.maximum(
            self.emitted_until[touched],
            self.config.window.final_until(self.stream_time[touched]))
        emission.batches.extend(self._emit(touched, final_until))
        return emission

    def _invalid_letters(self, merged: InputBatch, row_partition: np.ndarray,
                         reasons: np.ndarray, replay_until: np.ndarray) -> list[DeadLetter]:
        bad = np.flatnonzero(reasons != None)  # noqa: E711 - elementwise
        return [
            DeadLetter(str(reasons[i]), merged.topic, int(row_partition[i]),
                       int(merged.offsets[i]), merged.keys[i], merged.values[i])
            for i in bad if merged.offsets[i] >= replay_until[row_partition[i]]
        ]

    def _late_letters(self, merged: InputBatch, row_partition: np.ndarray,
                      rows: np.ndarray) -> list[DeadLetter]:
        """Dead letters for late readings at `rows` of the merged batch."""
        reason = (f"late: beyond {self.config.window.grace_ms} ms grace for "
                  f"{self.config.window.label} sliding windows")
        return [DeadLetter(reason, merged.topic, int(row_partition[i]), int(merged.offsets[i]),
                           merged.keys[i], merged.values[i]) for i in rows]

    def _append(self, codes: np.ndarray, ts: np.ndarray, values: np.ndarray,
                offsets: np.ndarray, partitions: np.ndarray) -> None:
        """Merge accepted readings into the sorted buffer (no full re-sort: the buffer is large,
        a batch small)."""
        if not len(codes):
            return
        key = codes * KEY_SPAN + ts
        order = np.lexsort((values, key))
        key, codes, ts, values, offsets, partitions = (
            key[order], codes[order], ts[order], values[order], offsets[order],
            partitions[order])
        pos = np.searchsorted(self.buf_key, key, side="left")
        if len(self.buf_key):
            ties = self.buf_key[np.minimum(pos, len(self.buf_key) - 1)] == key
        else:
            ties = np.zeros(len(key), dtype=bool)
        if ties.any() or (np.diff(key) == 0).any():
            # same client and event time: order by value, as the canonical order says
            both = [np.r_[a, b] for a, b in (
                (self.buf_key, key), (self.buf_code, codes), (self.buf_ts, ts),
                (self.buf_value, values), (self.buf_offset, offsets),
                (self.buf_partition, partitions))]
            merged = np.lexsort((both[3], both[0]))
            self.buf_key, self.buf_code = both[0][merged], both[1][merged]
            self.buf_ts, self.buf_value = both[2][merged], both[3][merged]
            self.buf_offset, self.buf_partition = both[4][merged], both[5][merged]
            return
        self.buf_key = np.insert(self.buf_key, pos, key)
        self.buf_code = np.insert(self.buf_code, pos, codes)
        self.buf_ts = np.insert(self.buf_ts, pos, ts)
        self.buf_value = np.insert(self.buf_value, pos, values)
        self.buf_offset = np.insert(self.buf_offset, pos, offsets)
        self.buf_partition = np.insert(self.buf_partition, pos, partitions)

    def tick_many(self, partitions: set[int], now_ms: int) -> Emission:
        """Emit pending readings of quiet clients of `partitions` once `t + grace <= now`."""
        self.last_arrival_ms[self.last_arrival_ms < 0] = now_ms
        if not len(self.buf_ts):
            return Emission()
        quiet = now_ms - self.last_arrival_ms >= self.config.idle_timeout_ms
        quiet &= np.isin(self.client_partition, np.fromiter(partitions, np.int64))
        if not quiet.any():
            return Emission()
        pending = ((self.buf_ts > self.emitted_until[self.buf_code]) & quiet[self.buf_code]
                   & (self.buf_ts + self.config.window.grace_ms <= now_ms))
        if not pending.any():
            return Emission()
        self._lows = None
        final_until = self.emitted_until.copy()
        np.maximum.at(final_until, self.buf_code[pending], self.buf_ts[pending])
        touched = np.unique(self.buf_code[pending])
        return Emission(batches=self._emit(touched, final_until, prune_all=True),
                        closed_on_idle=True)

    def _emit(self, touched: np.ndarray, final_until: np.ndarray,
              prune_all: bool = False) -> list[OutputBatch]:
        """Emit features of the `touched` clients' buffered readings in (horizon, final_until],
        advance their horizons and drop readings no future result needs (in bulk, once enough
        have piled up)."""
        base = touched * KEY_SPAN
        lo = np.searchsorted(self.buf_key, base, side="left")
        hi = np.searchsorted(self.buf_key, base + KEY_SPAN, side="left")
        rows = _ranges(lo, hi)  # the touched clients' rows, still sorted
        records: list[OutputBatch] = []
        if len(rows):
            sub_key = self.buf_key[rows]
            due = _ranges(
                np.searchsorted(sub_key, base + self.emitted_until[touched], side="right"),
                np.searchsorted(sub_key, base + final_until[touched], side="right"))
            if len(due):
                records = self._records(rows, due)
        self.emitted_until = final_until
        cut = np.searchsorted(self.buf_key, base + final_until[touched]
                              - self.config.window.size_ms, side="right")
        self._stale += int(np.maximum(cut - lo, 0).sum())
        if self._stale and (prune_all or self._stale >= max(PRUNE_MIN, len(self.buf_key) // 16)):
            self.prune()
        return records

    def prune(self) -> None:
        """Drop every buffered reading at or before its client's horizon - window."""
        horizon = self.emitted_until[self.buf_code]
        self._keep(self.buf_ts > horizon - self.config.window.size_ms)
        self._stale = 0

    def _records(self, rows: np.ndarray, due: np.ndarray) -> list[OutputBatch]:
        """Features of buffer rows `rows[due]` (`rows`: whole clients' sorted readings). One
        batch per feature topic, rows in (client, event time) order; JSON encoded in one
        vectorized pass (polars; floats in shortest round-trip form) or, for a few rows, orjson.
        """
        window = self.config.window
        code, ts = self.buf_code[rows], self.buf_ts[rows]
        feats = window_features(code, ts, self.buf_value[rows], due, window.size_ms)
        edges = self.config.edges
        columns = {"FA": feats.fa, "FI": feats.fi, "FD": feats.fd}
        names = np.asarray(self.clients.names, dtype=object)[code[due]]
        bins = {name: edges.bin(name, columns[name]) for name in FEATURES}
        if len(due) < SMALL_EMIT:
            return self._small_records(names.tolist(), ts[due], feats.count, columns, bins)
        frame = pl.DataFrame({
            "client": pl.Series(names, dtype=pl.String), "timestamp_ms": ts[due],
            "count": feats.count,
            **{name: columns[name] for name in FEATURES},
            **{f"{name}_bin": bins[name] for name in FEATURES},
        })
        encoded = frame.select(*(pl.struct(
            v=pl.lit(SENSOR_SCHEMA_VERSION, pl.Int64), client="client",
            feature=pl.lit(name, pl.String), timestamp_ms="timestamp_ms", value=name,
            bin=f"{name}_bin", edges_version=pl.lit(edges.version, pl.String),
            window_ms=pl.lit(window.size_ms, pl.Int64), count="count",
        ).struct.json_encode().alias(name) for name in FEATURES))
        keys = frame["client"].to_list()
        return [
            OutputBatch(self.config.output_topics[name], keys,
                        encoded[name].to_arrow().cast(pa.large_binary()).to_pylist(), keys)
            for name in FEATURES
        ]

    def _small_records(self, clients: list[str], ts: np.ndarray, count: np.ndarray,
                       columns: dict[str, np.ndarray], bins: dict[str, np.ndarray]
                       ) -> list[OutputBatch]:
        """The same rows as :meth:`_records`, encoded with orjson (cheaper for a few rows)."""
        window, edges = self.config.window, self.config.edges
        ts_list, count_list = ts.tolist(), count.tolist()
        batches = []
        for name in FEATURES:
            values = [
                orjson.dumps({"v": SENSOR_SCHEMA_VERSION, "client": c, "feature": name,
                              "timestamp_ms": t, "value": x, "bin": b,
                              "edges_version": edges.version, "window_ms": window.size_ms,
                              "count": n})
                for c, t, x, b, n in zip(clients, ts_list, columns[name].tolist(),
                                         bins[name].tolist(), count_list, strict=True)
            ]
            batches.append(OutputBatch(self.config.output_topics[name], clients, values,
                                       clients))
        return batches

    # --- offsets and checkpoints -------------------------------------------------------------
    def commit_offset(self, partition: int) -> int | None:
        state = self.partitions[partition]
        if state.position is None:
            return None
        if self._lows is None:
            lows = np.full(max(self.partitions) + 1, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(lows, self.buf_partition, self.buf_offset)
            self._lows = {p: int(lows[p]) for p in self.partitions}
        return min(state.position, self._lows[partition])

    def snapshot(self, partition: int) -> Snapshot:
        """Also drops buffered readings no future result needs, so the commit offset that the
        processor asks for next is as far along as it can be."""
        if self._stale:
            self.prune()
        state = self.partitions[partition]
        committed = self.commit_offset(partition)
        needed = state.needed_from if committed is None else committed
        state.late_offsets = {o for o in state.late_offsets if o >= needed}
        mine = np.flatnonzero(self.client_partition == partition)
        return {
            "version": SNAPSHOT_VERSION,
            "next_offset": max(state.position or 0, state.replay_until),
            "needed_from": needed,
            "late_offsets": sorted(state.late_offsets),
            "clients": [self.clients.names[i] for i in mine.tolist()],
            "stream_time": self.stream_time[mine].tolist(),
            "emitted_until": self.emitted_until[mine].tolist(),
        }

    def restore(self, partition: int, snapshot: Snapshot) -> None:
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported sensor window snapshot: {snapshot.get('version')}")
        codes, new = self.clients.encode(list(snapshot["clients"]))
        self._grow(new)
        self.client_partition[codes] = partition
        self.stream_time[codes] = np.asarray(snapshot["stream_time"], dtype=np.int64)
        self.emitted_until[codes] = np.asarray(snapshot["emitted_until"], dtype=np.int64)
        state = self.partitions.setdefault(partition, _Partition())
        state.replay_until = int(snapshot["next_offset"])
        state.needed_from = int(snapshot["needed_from"])
        state.late_offsets = {int(o) for o in snapshot["late_offsets"]}


class SensorWindowOperator(PartitionOperator):
    """One partition's handle on a :class:`SensorWindowGroup` (a private one if none given)."""

    def __init__(self, config: SensorWindowConfig, partition: int,
                 group: SensorWindowGroup | None = None) -> None:
        self.config = config
        self.partition = partition
        self.group = group if group is not None else SensorWindowGroup(config)
        self.group.open(partition)

    @classmethod
    def process_many(cls, work: Sequence[tuple[PartitionOperator, InputBatch]],
                     now_ms: int) -> Emission:
        return process_by_group(work, now_ms)

    @classmethod
    def tick_many(cls, operators: Sequence[PartitionOperator], now_ms: int) -> Emission:
        emission = Emission()
        by_group: dict[int, tuple[SensorWindowGroup, set[int]]] = {}
        for operator in operators:
            assert isinstance(operator, SensorWindowOperator)
            by_group.setdefault(id(operator.group), (operator.group, set()))[1].add(
                operator.partition)
        for group, partitions in by_group.values():
            emission.extend(group.tick_many(partitions, now_ms))
        return emission

    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        return self.group.process_many([(self.partition, batch)], now_ms)

    def tick(self, now_ms: int) -> Emission:
        return self.group.tick_many({self.partition}, now_ms)

    def close(self) -> None:
        self.group.close(self.partition)

    def commit_offset(self, topic: str) -> int | None:
        return self.group.commit_offset(self.partition)

    def snapshot(self) -> Snapshot:
        return self.group.snapshot(self.partition)

    def restore(self, snapshot: Snapshot) -> None:
        self.group.restore(self.partition, snapshot)

    # the buffer of this partition, for tests and inspection
    @property
    def buf_ts(self) -> np.ndarray:
        return self.group.buf_ts[self.group.buf_partition == self.partition]

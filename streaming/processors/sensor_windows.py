"""The sensor window operator: SZ readings -> window features FA, FI, FD per reading, at once.

For each client it keeps the stream time (largest SZ event time seen), for each partition its
stream time (the largest of its clients'), and a buffer of the accepted readings with event time
> final - window, where final = max(client's stream time - grace, partition's stream time - max
lateness): all a future result can need.

- **Emission**: Each accepted SZ reading's FA, FI, FD go out in the poll that processes it, and
  again as a correction when a reading within grace lands in its window; they are final once the
  client's stream time passes the reading's time plus grace, or its partition's stream time
  passes the reading's time plus the max lateness, decided by event time alone, never by the
  wall clock.
  A reading within grace that lands behind readings already emitted gives a **correction** for
  each emitted reading of its client whose window `(t' - 10 min, t']` contains it (in practice
  the readings in `(t, stream time]`, at most a grace's worth): the same key (client) and
  (feature, timestamp_ms), later in the topic, with the new values. No wall clock decides
  anything, so the batch layer reading the same log computes the same final values
  (`batch/sensors_backfill.py`).
- **Lateness**: a reading is late (dead letter) when `t + grace <=` its client's stream time
  before it, or `t + max lateness <=` its partition's stream time before it
  (`features.windows.sliding_lateness`, in log order): it could only change results already
  final. Any arrival order within those bounds gives the same final features. The second bound
  keeps the buffer of a client whose readings stopped from holding readings for ever.
- Each feature row goes to its topic (FA, FI, FD) keyed by client, identified by
  (client, feature, timestamp_ms): the last row of an identity is its value. The rows of a poll
  go out in event-time order, so on every FA, FI, FD partition a row's time plus the max
  lateness is above the time of every row before it (the join's partition rule, applied to the
  feature topics, then never rejects a row of an uninterrupted run).
- Commit offset of a partition: the earliest offset of its readings still in the buffer (else
  its next offset), so a restart rebuilds the buffer from the log. Readings no longer needed are
  dropped in bulk (at each checkpoint, or once the buffer has doubled), so the buffer stays
  sorted without a re-sort per batch.

Replay after a restart: a partition's checkpoint holds its clients' stream times, the next
offset, the commit offset it went with (`needed_from`) and the offsets rejected as late since
then. Replayed messages (below the checkpointed next offset) are not judged again and emit
nothing (their features, corrections included, went out before the checkpoint): those below
`needed_from` or rejected before are skipped, the others go back into the buffer. From the next
offset on, the operator holds what the first run held and decides as it did.

Hand-over (a rebalance, a SIGTERM): the partition's last snapshot here also carries its buffered
readings (`hand_over`), so the state moves with the partition: the next owner restores them and
resumes at the next offset (`resume_offset`) instead of re-reading up to 10 minutes (or the max
lateness) of the log. The committed offset stays the earliest buffered reading's: after a
kill -9 the next owner rebuilds from the log as above, from the last (plain) checkpoint. Plain
checkpoints, once a second, stay small: only hand-overs carry the buffer.

Vectorized across partitions: the operators of one processor share a :class:`SensorWindowGroup`
(clients never span partitions), and `process_many` handles one poll's batches of every
partition in one pass, so the cost per poll does not grow with the number of partitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from features.event_time import DEFAULT_MAX_EVENT_TIME_SKEW_MS
from features.sensors.binning import BinEdges
from features.sensors.schemas import FEATURES, SENSOR_SCHEMA_VERSION
from features.sensors.vectors import KEY_SPAN, MAX_CLIENT_CODES
from features.sensors.window_math import check_max_lateness, keyed_window_features
from features.windows import (
    LATE_BY_PARTITION_TIME,
    NO_STREAM_TIME,
    ON_TIME,
    SlidingWindow,
    sliding_lateness,
)
from streaming.processors.sensor_buffer import Context, ReadingBuffer, Readings
from streaming.processors.sensor_decoding import decode_readings
from streaming.processors.sensor_history import ranges
from streaming.runtime.key_codes import KeyCodes
from streaming.runtime.operator import PartitionOperator, Snapshot, process_by_group
from streaming.runtime.records import (
    DeadLetter,
    Emission,
    InputBatch,
    OutputBatch,
    merged_timestamps,
)

SNAPSHOT_VERSION = 2  # 1: features emitted once final (idle closures); not restorable. A v2
# snapshot may carry its buffer (a hand-over); a reader that ignores it replays from the commit
SMALL_EMIT = 128  # below this many rows, orjson per row beats one polars pass
PRUNE_MIN = 4_096
OFFSET_SPAN = 1 << 40  # (partition, offset) as one int: partition * OFFSET_SPAN + offset


@dataclass(frozen=True)
class SensorWindowConfig:
    window: SlidingWindow
    edges: BinEdges
    output_topics: dict[str, str]  # feature name (FA, FI, FD) -> topic
    # how far a reading's event time may lie ahead of its Kafka timestamp (features.event_time)
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS

    def __post_init__(self) -> None:
        check_max_lateness(self.window.max_lateness_ms, self.max_event_time_skew_ms)


@dataclass
class _Partition:
    """Replay bookkeeping of one partition (see the module docstring)."""

    position: int | None = None  # next offset to process, once consuming
    replay_until: int = 0
    needed_from: int = 0
    late_offsets: set[int] = field(default_factory=set)
    handing_over: bool = False  # the next snapshot carries the buffer (hand_over)
    resume_at: int | None = None  # restored with its buffer: consume from here


class SensorWindowGroup:
    """The state of every partition one processor owns, as flat arrays over clients."""

    def __init__(self, config: SensorWindowConfig) -> None:
        self.config = config
        self.clients = KeyCodes()
        self.client_partition = np.empty(0, dtype=np.int64)
        self.stream_time = np.empty(0, dtype=np.int64)
        # per partition number: its stream time (the largest event time of its readings)
        self.partition_time = np.empty(0, dtype=np.int64)
        # the readings open windows need, sorted by (client, timestamp, value)
        self.buffer = ReadingBuffer()
        self._prune_at = PRUNE_MIN  # buffer length that triggers the next bulk prune
        self._pruned = True  # nothing processed since the last prune
        self.partitions: dict[int, _Partition] = {}
        self._lows: dict[int, int] | None = None  # per partition: lowest buffered offset
        self._names = np.empty(0, dtype=object)  # client names by code (`_client_names`)

    # --- partitions coming and going ---------------------------------------------------------
    def open(self, partition: int) -> None:
        """Start a partition afresh (assignment): forget anything held for it."""
        self.close(partition)
        self.partitions[partition] = _Partition()
        if partition >= len(self.partition_time):
            grown = np.full(partition + 1, NO_STREAM_TIME, dtype=np.int64)
            grown[:len(self.partition_time)] = self.partition_time
            self.partition_time = grown

    def close(self, partition: int) -> None:
        """Drop a partition's clients' state and readings (revocation)."""
        self.partitions.pop(partition, None)
        if partition < len(self.partition_time):
            self.partition_time[partition] = NO_STREAM_TIME
        mine = self.client_partition == partition
        if mine.any():
            self.stream_time[mine] = NO_STREAM_TIME
            self.client_partition[mine] = -1
        self.buffer.flat().keep(self.buffer.main.partition != partition)
        self._lows = None

    def _grow(self, new: int) -> None:
        if new:
            fill = np.full(new, NO_STREAM_TIME, dtype=np.int64)
            self.stream_time = np.r_[self.stream_time, fill]
            self.client_partition = np.r_[self.client_partition, np.full(new, -1, np.int64)]

    @property
    def buf_ts(self) -> np.ndarray:
        """Every buffered reading's event time, in buffer order (tests and inspection)."""
        return self.buffer.flat().ts

    # --- processing --------------------------------------------------------------------------
    def process_many(self, work: Sequence[tuple[int, InputBatch]], now_ms: int) -> Emission:
        """One poll's batches (partition, batch) of the SZ topic, all at once."""
        work = [(p, b) for p, b in work if len(b)]
        if not work:
            return Emission()
        self._lows = None
        merged = InputBatch(
            work[0][1].topic, -1, np.concatenate([b.offsets for _, b in work]),
            list(chain.from_iterable(b.keys for _, b in work)),
            list(chain.from_iterable(b.values for _, b in work)),
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
        if new and int(codes.max()) >= MAX_CLIENT_CODES:
            raise OverflowError(f"more than {MAX_CLIENT_CODES} clients in one processor")
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
        lateness = np.zeros(len(ts), dtype=np.int8)
        if fresh.any():
            lateness[fresh] = sliding_lateness(self.config.window, codes[fresh], ts[fresh],
                                               self.stream_time, part[fresh],
                                               self.partition_time)
        late = lateness != ON_TIME
        if late.any():
            emission.dead_letters.extend(self._late_letters(
                merged, row_partition, np.flatnonzero(valid)[late], lateness[late]))
            for p, o in zip(part[late].tolist(), offsets[late].tolist(), strict=True):
                self.partitions[p].late_offsets.add(o)
        accept = ~skip & ~late
        self.buffer.append(Readings.sorted_batch(codes[accept], ts[accept], values[accept],
                                                 offsets[accept], part[accept]))
        np.maximum.at(self.stream_time, codes, ts)
        np.maximum.at(self.partition_time, part, ts)
        self._pruned = False
        emit = accept & fresh  # replayed readings went out before the checkpoint
        if emit.any():
            emission.batches.extend(self._emit(codes[emit], ts[emit]))
        if len(self.buffer) >= self._prune_at:
            self.prune()
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
                      rows: np.ndarray, lateness: np.ndarray) -> list[DeadLetter]:
        """Dead letters for late readings at `rows` of the merged batch (`lateness`: why)."""
        window = self.config.window
        reasons = {
            True: (f"late: {window.max_lateness_ms} ms (max lateness) or more behind its "
                   f"partition's stream time, for {window.label} sliding windows"),
            False: f"late: beyond {window.grace_ms} ms grace for {window.label} sliding windows",
        }
        return [DeadLetter(reasons[bool(why == LATE_BY_PARTITION_TIME)], merged.topic,
                           int(row_partition[i]), int(merged.offsets[i]), merged.keys[i],
                           merged.values[i])
                for i, why in zip(rows.tolist(), lateness.tolist(), strict=True)]

    def _emit(self, codes: np.ndarray, ts: np.ndarray) -> list[OutputBatch]:
        """Features of the readings just accepted (`codes`, `ts`: in the buffer already) and
        corrections of every buffered reading whose window holds one of them: for each client,
        the buffered readings at or after its earliest new reading whose window
        `(t' - W, t']` contains a new reading (in order, only the new readings themselves)."""
        size = self.config.window.size_ms
        new_keys = np.sort(codes * KEY_SPAN + ts)
        touched, first = np.unique(new_keys // KEY_SPAN, return_index=True)
        earliest = new_keys[first]  # per touched client, its earliest new reading
        base = touched * KEY_SPAN
        # context: the touched clients' readings a target's window can reach, each client's
        # sorted readings from there on, one client after another
        context = self.buffer.context(np.maximum(earliest - size, base), base + KEY_SPAN)
        context_key = context.key
        hi = np.searchsorted(context_key, base + KEY_SPAN, side="left")
        # candidates: each touched client's readings from its earliest new one on (a few per
        # client, where the context holds a window's worth): judged alone, not the context
        first = np.searchsorted(context_key, earliest, side="left")
        position = ranges(first, hi)  # candidates' rows in the context
        key = context_key[position]
        # a candidate is due when a new reading lies in its window (t' - W, t']
        start = np.maximum(key - size, (key // KEY_SPAN) * KEY_SPAN)
        holds_new = (np.searchsorted(new_keys, key, side="right")
                     > np.searchsorted(new_keys, start, side="right"))
        # readings sharing a client and time share their window: one row for them
        following = np.minimum(position + 1, len(context_key) - 1)
        last_of_key = (position == len(context_key) - 1) | (context_key[following] != key)
        due = position[holds_new & last_of_key]
        if not len(due):
            return []
        return self._records(context, due)

    def prune(self) -> None:
        """Drop every buffered reading no future result needs: event time at or before
        final - window, final = max(client's stream time - grace, partition's stream time - max
        lateness). (Once per checkpoint, not once per partition: nothing changes between the
        partitions' snapshots.)"""
        if self._pruned:
            return
        self._pruned = True
        window = self.config.window
        final = window.final_until(self.stream_time, self._client_partition_time())
        self.buffer.keep(lambda level: level.ts > final[level.code] - window.size_ms)
        self._lows = None
        self._prune_at = max(PRUNE_MIN, 2 * len(self.buffer))

    def _client_partition_time(self) -> np.ndarray:
        """Per client, the stream time of its partition (NO_STREAM_TIME: none)."""
        known = self.client_partition >= 0
        out = np.full(len(self.client_partition), NO_STREAM_TIME, dtype=np.int64)
        out[known] = self.partition_time[self.client_partition[known]]
        return out

    def _records(self, context: Context, due: np.ndarray) -> list[OutputBatch]:
        """Features of the readings `context[due]` (`context`: whole clients' sorted readings
        back to the earliest window needed). One batch per feature topic, rows in event-time
        order (see the module docstring: the join's partition rule relies on it); JSON encoded
        in one vectorized pass (polars; floats in shortest round-trip form) or, for a few rows,
        orjson."""
        window = self.config.window
        feats = keyed_window_features(context.key, context.value, due, window.size_ms,
                                      KEY_SPAN)
        due_key = context.key[due]
        ts = due_key % KEY_SPAN
        order = np.argsort(ts, kind="stable")  # event-time order
        due_key, ts, count = due_key[order], ts[order], feats.count[order]
        edges = self.config.edges
        columns = {"FA": feats.fa[order], "FI": feats.fi[order], "FD": feats.fd[order]}
        names = self._client_names()[due_key // KEY_SPAN]
        bins = {name: edges.bin(name, columns[name]) for name in FEATURES}
        if len(due) < SMALL_EMIT:
            return self._small_records(names.tolist(), ts, count, columns, bins)
        frame = pl.DataFrame({
            "client": pl.Series(names, dtype=pl.String), "timestamp_ms": ts,
            "count": count,
            **{name: columns[name] for name in FEATURES},
            **{f"{name}_bin": bins[name] for name in FEATURES},
        })
        encoded = frame.select(*(pl.struct(
            v=pl.lit(SENSOR_SCHEMA_VERSION, pl.Int64), client="client",
            feature=pl.lit(name, pl.String), timestamp_ms="timestamp_ms", value=name,
            bin=f"{name}_bin", edges_version=pl.lit(edges.version, pl.String),
            window_ms=pl.lit(window.size_ms, pl.Int64), count="count",
        ).struct.json_encode().alias(name) for name in FEATURES))
        keys = names.tolist()
        return [
            OutputBatch(self.config.output_topics[name], keys,
                        encoded[name].to_arrow().cast(pa.large_binary()).to_pylist(), keys)
            for name in FEATURES
        ]

    def _client_names(self) -> np.ndarray:
        """Every client's name by code, as an object array (extended as clients come, not
        rebuilt per poll)."""
        known = len(self._names)
        if known < len(self.clients.names):
            self._names = np.concatenate([self._names, np.asarray(
                self.clients.names[known:], dtype=object)])
        return self._names

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
            for level in self.buffer.levels():
                np.minimum.at(lows, level.partition, level.offset)
            self._lows = {p: int(lows[p]) for p in self.partitions}
        return min(state.position, self._lows[partition])

    def hand_over(self, partition: int) -> None:
        """The partition leaves this process: its next snapshot carries its buffer."""
        self.partitions[partition].handing_over = True

    def snapshot(self, partition: int) -> Snapshot:
        """Also drops buffered readings no future result needs, so the commit offset that the
        processor asks for next is as far along as it can be. After `hand_over`, the snapshot
        also carries the partition's buffered readings (`buffer`: each reading's client, as an
        index into `clients`, event time, value and offset), so that the next owner restores
        them and resumes at `next_offset` instead of re-reading the log back to `needed_from`
        (not while a restart's replay is under way: the buffer is still being rebuilt)."""
        self.prune()
        state = self.partitions[partition]
        committed = self.commit_offset(partition)
        needed = state.needed_from if committed is None else committed
        state.late_offsets = {o for o in state.late_offsets if o >= needed}
        mine = np.flatnonzero(self.client_partition == partition)
        snapshot: Snapshot = {
            "version": SNAPSHOT_VERSION,
            "next_offset": max(state.position or 0, state.replay_until),
            "needed_from": needed,
            "late_offsets": sorted(state.late_offsets),
            "clients": [self.clients.names[i] for i in mine.tolist()],
            "stream_time": self.stream_time[mine].tolist(),
        }
        # the buffer holds every needed reading below next_offset only once a restart's replay
        # is over: until then the next owner replays as this one would
        replayed = state.position is not None and state.position >= state.replay_until
        if state.handing_over and replayed:
            held = self.buffer.flat()
            rows = np.flatnonzero(held.partition == partition)
            snapshot["buffer"] = {
                "client": np.searchsorted(mine, held.code[rows]).tolist(),
                "timestamp_ms": held.ts[rows].tolist(),
                "value": held.value[rows].tolist(),
                "offset": held.offset[rows].tolist(),
            }
        return snapshot

    def restore(self, partition: int, snapshot: Snapshot) -> None:
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported sensor window snapshot: {snapshot.get('version')} "
                             "(a checkpoint of an older Braid: start a new consumer group)")
        codes, new = self.clients.encode(list(snapshot["clients"]))
        self._grow(new)
        self.client_partition[codes] = partition
        self.stream_time[codes] = np.asarray(snapshot["stream_time"], dtype=np.int64)
        # the partition's stream time is the largest of its clients' (each counts every reading)
        if partition >= len(self.partition_time):
            grown = np.full(partition + 1, NO_STREAM_TIME, dtype=np.int64)
            grown[:len(self.partition_time)] = self.partition_time
            self.partition_time = grown
        self.partition_time[partition] = int(self.stream_time[codes].max(initial=NO_STREAM_TIME))
        state = self.partitions.setdefault(partition, _Partition())
        state.replay_until = int(snapshot["next_offset"])
        state.needed_from = int(snapshot["needed_from"])
        state.late_offsets = {int(o) for o in snapshot["late_offsets"]}
        buffer = snapshot.get("buffer")
        if buffer is not None:
            self._restore_buffer(partition, codes, buffer)
            # the buffer holds every reading below next_offset still needed: consume from
            # there; a consumer that resumes earlier replays readings held already (skipped)
            state.needed_from = state.position = state.resume_at = state.replay_until

    def _restore_buffer(self, partition: int, codes: np.ndarray, buffer: Snapshot) -> None:
        """Put a handed-over partition's buffered readings back (`codes`: its clients')."""
        client = np.asarray(buffer["client"], dtype=np.int64)
        ts = np.asarray(buffer["timestamp_ms"], dtype=np.int64)
        if not len(ts):
            return
        self.buffer.append(Readings.sorted_batch(
            codes[client], ts, np.asarray(buffer["value"], dtype=np.float64),
            np.asarray(buffer["offset"], dtype=np.int64),
            np.full(len(ts), partition, dtype=np.int64)))
        self._lows = None
        self._pruned = False

    def resume_offset(self, partition: int) -> int | None:
        return self.partitions[partition].resume_at


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

    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        return self.group.process_many([(self.partition, batch)], now_ms)

    def close(self) -> None:
        self.group.close(self.partition)

    def commit_offset(self, topic: str) -> int | None:
        return self.group.commit_offset(self.partition)

    def hand_over(self) -> None:
        self.group.hand_over(self.partition)

    def snapshot(self) -> Snapshot:
        return self.group.snapshot(self.partition)

    def restore(self, snapshot: Snapshot) -> None:
        self.group.restore(self.partition, snapshot)

    def resume_offset(self, topic: str) -> int | None:
        return self.group.resume_offset(self.partition)

    # the buffer of this partition, for tests and inspection
    @property
    def buf_ts(self) -> np.ndarray:
        held = self.group.buffer.flat()
        return held.ts[held.partition == self.partition]

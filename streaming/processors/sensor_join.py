"""The join-and-predict operator: SX, SY, FA, FI, FD per client -> one prediction per event.

An as-of (temporal) join, after Kafka Streams' versioned stores and Flink's event-time temporal
join. The vector of an event is :data:`features.sensors.vectors.RULE`:

    The vector of an event of client c at event time t (an SX, SY or SZ reading) is c's SX and
    SY as of t (the reading with the latest event time at or before t, the largest value at a
    tie) and the FA, FI, FD bins of the 10-minute window ending at c's latest SZ reading at or
    before t, counting only readings not late (per topic, in log order: late is grace or more
    behind the client's stream time, or the max lateness or more behind the partition's).

The five input topics are co-partitioned (keyed by client), so one operator per partition
number sees every event of its clients. Per client it keeps, as sorted numpy rows:

- the accepted SX and SY readings (event time, value) and, per SZ reading time, its FA, FI, FD
  bins and bin-edges versions as the feature topics last said (a later message for the same
  (client, feature, time) is a correction of the window processor and replaces the earlier);
  an SZ reading counts only once all three of its features are there;
- its events, (client, time, trigger), with the vector last published for each.

Each poll: the inputs are judged late or not (per topic in log order: `t + grace <=` the
client's stream time in that topic before it, or `t + max lateness <=` its topic-partition's
stream time before it, the window processor's rule; a late SX or SY is dead-lettered with its
reason), the accepted ones enter the history, and every event of a
touched client at or after the earliest time touched is computed again by the rule (for input
in order, that is only the new events). An event with all five fields gets its prediction at
once; an event whose vector changed (a late SX/SY within grace, a feature correction, an SZ
reading completed after a later event was answered) gets a new prediction, published only where
the vector or its edges changed. A prediction is keyed `client|timestamp_ms|trigger` (trigger:
the event's sensor, SX, SY or SZ): the same key again is a correction, a new key a new event;
its value bytes are a function of the events (and the model) only, so a replay publishes the
same bytes.

A feature message can be late only as a re-emission of the window processor after it
restarted (it emits within its grace of its own stream time and within its max lateness of its
partition's, a poll's rows in event-time order, and its topics carry every value in order): the
join already holds that (client, feature, time) as of a later point of the window processor's
log, so the message is dropped and counted (`features_replayed`), not dead-lettered. (The
window processor's grace and max lateness must not exceed the join's.)

**Bounded state.** History and events at or before `L = min over the five topics of
max(client's stream time - grace, partition's stream time - max lateness)` can change no answer
any more (no accepted input can lie there), so they are dropped, keeping the latest SX, SY and
complete SZ reading at or before `L` for as-of lookups as **base rows**, whose values go into
the checkpoint (they hold no commit offset back). `L` follows the client's slowest topic: with
the simulator's rates (SX every minute) a client keeps about a minute of history. A client one
of whose inputs stopped (or never came) keeps at most the max lateness of it: its partition's
stream time in that topic moves on. An SX/SY event whose client's features have not reached
its time is held until they do, or until its partition's features are the max lateness past it
(they can no longer come), or until the end of the log.

**Restarts** rebuild the history from the log, as the window processor rebuilds its buffer:
every history row remembers the offset of the message it came from, the commit offset of a
topic is the earliest offset a held row came from (else the next offset), and a partition's
checkpoint holds its clients' stream times per topic, the next and commit offsets, the
offsets judged late since, and the owed answers (below). Replayed messages (below the
checkpointed next offsets) are not judged again and answer nothing: those below the commit
offset or judged late before are skipped, the others go back into the history, and their events
count as never published, so the first answer after the restart publishes them again (what was
published after the checkpoint is not known). Until every topic of the partition has replayed,
nothing is pruned and fresh inputs enter the history but owe their answer (per client, the
earliest time still to answer; kept in the checkpoint), answered once the history is whole.
From then on the operator holds what the first run held and decides as it did, and a restart
ends every key on the value an uninterrupted run ends on. The checkpoint also holds the
partition's stream time per topic and its clients' base rows (bounded: three rows per client).

The operators of one processor share a :class:`SensorJoinGroup`: one poll's batches of every
partition are joined in one vectorized pass.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson

from features.event_time import DEFAULT_MAX_EVENT_TIME_SKEW_MS
from features.sensors.model import AlertModel, pinned, predict_many
from features.sensors.schemas import (
    CATEGORICAL_SENSORS,
    FEATURES,
    SENSOR_SCHEMA_VERSION,
    VECTOR_FIELDS,
)
from features.sensors.vectors import (
    KEY_SPAN,
    MAX_CLIENT_CODES,
    MISSING,
    TRIGGERS,
    complete,
    vectors_as_of,
)
from features.sensors.window_math import (
    DEFAULT_GRACE_MS,
    DEFAULT_MAX_LATENESS_MS,
    check_max_lateness,
    sensor_window,
)
from features.windows import LATE_BY_PARTITION_TIME, NO_STREAM_TIME, ON_TIME, sliding_lateness
from streaming.processors.sensor_decoding import decode_features, decode_readings
from streaming.processors.sensor_history import Rows, ranges
from streaming.runtime.key_codes import KeyCodes
from streaming.runtime.operator import PartitionOperator, Snapshot, process_by_group
from streaming.runtime.records import (
    DeadLetter,
    Emission,
    InputBatch,
    OutputBatch,
    merged_timestamps,
)

SNAPSHOT_VERSION = 3  # 3: + base rows (see `snapshot`); 1: latest value per field, not restorable
RESTORABLE = (2, 3)  # a version 2 checkpoint's commit offsets cover every held row
NO_VERSION = -1
PRUNE_MIN = 4_096
OFFSET_SPAN = 1 << 40  # (partition, offset) as one int: partition * OFFSET_SPAN + offset
NOT_OWED = np.iinfo(np.int64).max
FIELD_INDEX = {name: i for i, name in enumerate(VECTOR_FIELDS)}  # stream time rows, per topic


@dataclass(frozen=True)
class SensorJoinConfig:
    input_topics: dict[str, str]  # topic -> field (SX, SY, FA, FI, FD)
    output_topic: str
    model: AlertModel
    threshold: float = 0.5
    # grace of every input, per client and topic; at least the window processor's, whose
    # corrections come up to its grace behind
    grace_ms: int = DEFAULT_GRACE_MS
    # how far an SX/SY reading's event time may lie ahead of its Kafka timestamp
    # (features.event_time)
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS
    # an input this far or further behind its topic-partition's stream time is late (the
    # window processor's max lateness: the same rule on SZ)
    max_lateness_ms: int = DEFAULT_MAX_LATENESS_MS

    def __post_init__(self) -> None:
        if sorted(self.input_topics.values()) != sorted(VECTOR_FIELDS):
            raise ValueError(f"join needs one input topic per field of {VECTOR_FIELDS}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"alert threshold must be in [0, 1], got {self.threshold}")
        if self.grace_ms < 0:
            raise ValueError("grace must be non-negative")
        check_max_lateness(self.max_lateness_ms, self.max_event_time_skew_ms)


@dataclass
class _Partition:
    """Per input topic of one partition: the next offset; from the checkpoint, the offset below
    which messages are replays, the commit offset it went with (replays below it are skipped)
    and the offsets judged late since (skipped too)."""

    position: dict[str, int] = field(default_factory=dict)
    replay_until: dict[str, int] = field(default_factory=dict)
    needed_from: dict[str, int] = field(default_factory=dict)
    late_offsets: dict[str, set[int]] = field(default_factory=dict)

    def caught_up(self) -> bool:
        """Every topic's replay is done: the history is what it was at the checkpoint."""
        return all(self.position.get(t, self.needed_from.get(t, 0)) >= until
                   for t, until in self.replay_until.items())


@dataclass
class _Accepted:
    """One topic's accepted inputs of a poll, in arrival order."""

    field: str  # SX, SY, FA, FI, FD
    codes: np.ndarray
    ts: np.ndarray
    values: np.ndarray  # SX/SY categories or feature bins
    versions: np.ndarray | None  # features: edges version codes
    offsets: np.ndarray
    fresh: np.ndarray  # bool: not a replay (only fresh inputs are answered)


class SensorJoinGroup:
    """The state of every partition one processor owns (clients never span partitions)."""

    def __init__(self, config: SensorJoinConfig) -> None:
        self.config = config
        # its lateness rule, per topic
        self.window = sensor_window(config.grace_ms, config.max_lateness_ms)
        self.clients = KeyCodes()
        self.client_partition = np.empty(0, dtype=np.int64)
        # per topic (VECTOR_FIELDS order) and client: the largest event time seen
        self.stream_time = np.empty((len(VECTOR_FIELDS), 0), dtype=np.int64)
        # per topic and partition number: the largest event time seen (every client's)
        self.partition_time = np.empty((len(VECTOR_FIELDS), 0), dtype=np.int64)
        self.edges_versions: list[str] = []
        # histories, sorted by composite key (client * KEY_SPAN + event time)
        # (sx, sy: sorted by (key, value): the last row at a key holds the largest value)
        self.sx = Rows(value=np.int64, offset=np.int64)
        self.sy = Rows(value=np.int64, offset=np.int64)
        width = len(FEATURES)  # per SZ reading: FA, FI, FD bins, edges and source offsets
        self.sz = Rows(bins=(np.int64, width), edges=(np.int64, width),
                       offsets=(np.int64, width))
        # events, sorted by (key, trigger); `sent`: the vector last published (MISSING: none)
        self.events = Rows(trigger=np.int64, sent=(np.int64, len(VECTOR_FIELDS)),
                           sent_edges=(np.int64, width))
        self._lows: dict[tuple[int, str], int] | None = None  # commit offsets, cached
        self._bases: dict[int, dict[str, str]] | None = None  # packed base rows, cached
        # per client: the earliest time fresh inputs touched that is not answered yet (while
        # its partition replays after a restart, answers wait for the whole history)
        self.owed = np.empty(0, dtype=np.int64)
        self._replaying: set[int] = set()  # restored partitions whose replay is not done
        self._prune_at = PRUNE_MIN
        self._pruned = True  # nothing entered or answered since the last prune
        self._settled_at_prune: np.ndarray | None = None  # per client, L at the last pass
        self.partitions: dict[int, _Partition] = {}
        self.counts: Counter[str] = Counter()

    # --- partitions coming and going ---------------------------------------------------------
    def open(self, partition: int) -> None:
        """Start a partition afresh (assignment): forget anything held for it."""
        self.close(partition)
        self.partitions[partition] = _Partition()
        if partition >= self.partition_time.shape[1]:
            grown = np.full((len(VECTOR_FIELDS), partition + 1), NO_STREAM_TIME, dtype=np.int64)
            grown[:, :self.partition_time.shape[1]] = self.partition_time
            self.partition_time = grown

    def close(self, partition: int) -> None:
        """Forget a partition's clients (revocation)."""
        self.partitions.pop(partition, None)
        self._replaying.discard(partition)
        if partition < self.partition_time.shape[1]:
            self.partition_time[:, partition] = NO_STREAM_TIME
        mine = self.client_partition == partition
        if not mine.any():
            return
        self.stream_time[:, mine] = NO_STREAM_TIME
        self.owed[mine] = NOT_OWED
        self.client_partition[mine] = -1
        for rows in (self.sx, self.sy, self.sz, self.events):
            rows.keep(~mine[rows.key // KEY_SPAN])
        self._lows = None
        self._bases = None

    def _grow(self, new: int) -> None:
        if new:
            self.stream_time = np.c_[self.stream_time,
                                     np.full((len(VECTOR_FIELDS), new), NO_STREAM_TIME)]
            self.client_partition = np.r_[self.client_partition, np.full(new, -1, np.int64)]
            self.owed = np.r_[self.owed, np.full(new, NOT_OWED, dtype=np.int64)]

    def _version_code(self, version: str) -> int:
        if version not in self.edges_versions:
            self.edges_versions.append(version)
        return self.edges_versions.index(version)

    # --- processing --------------------------------------------------------------------------
    def process_many(self, work: Sequence[tuple[int, InputBatch]], now_ms: int) -> Emission:
        """One poll's batches (partition, batch): decoded and judged per topic (all partitions
        at once), entered into the history, and the touched clients' events answered."""
        emission = Emission()
        by_topic: dict[str, list[tuple[int, InputBatch]]] = {}
        for partition, batch in work:
            if len(batch):
                by_topic.setdefault(batch.topic, []).append((partition, batch))
        accepted: list[_Accepted] = []
        for topic, batches in by_topic.items():
            letters, inputs = self._decode(topic, batches)
            emission.extend(letters)
            if inputs is not None:
                accepted.append(inputs)
        touched = self._enter(accepted) if accepted else np.empty(0, dtype=np.int64)
        self._pruned = self._pruned and not accepted
        for p in [p for p in self._replaying if self.partitions[p].caught_up()]:
            self._replaying.discard(p)  # its history is whole again: what it owes is due
            self._pruned = False
            touched = np.r_[touched, np.flatnonzero(self.client_partition == p)]
        touched = np.r_[touched, self._released()]
        emission.extend(self._answer_clients(touched, force=False))
        if len(self.events) + len(self.sz) >= self._prune_at:
            self.prune()
        return emission

    def tick_many(self, partitions: set[int], now_ms: int) -> Emission:
        """Every input topic of `partitions` is consumed to its end: answer what their clients'
        events were held for (an SX/SY event waiting for the features of its time)."""
        owing = np.flatnonzero(self.owed != NOT_OWED)  # few: the idle check runs every poll
        mine = owing[np.isin(self.client_partition[owing], list(partitions))]
        return self._answer_clients(mine, force=True)

    def _client_partition_time(self, clients: np.ndarray | None = None) -> np.ndarray:
        """Per topic (VECTOR_FIELDS order) and client (every client, or those given): the
        stream time of the client's partition in that topic (NO_STREAM_TIME: none yet)."""
        part = self.client_partition if clients is None else self.client_partition[clients]
        out = np.full((len(VECTOR_FIELDS), len(part)), NO_STREAM_TIME, dtype=np.int64)
        known = part >= 0
        out[:, known] = self.partition_time[:, part[known]]
        return out

    def _feature_frontier(self, clients: np.ndarray) -> np.ndarray:
        """Per client of `clients`: the time up to which its features are in, or can no
        longer come (min over FA, FI, FD of the larger of its stream time and its partition's
        stream time - max lateness): an SX/SY event after it waits for them. (For the clients
        asked only: this runs every poll, and every client's would cost a pass over all.)"""
        rows = [FIELD_INDEX[f] for f in FEATURES]
        partition_time = self._client_partition_time(clients)[rows]
        beyond = np.where(partition_time == NO_STREAM_TIME, NO_STREAM_TIME,
                          partition_time - self.config.max_lateness_ms)
        own = self.stream_time[np.asarray(rows)[:, None], clients]
        return np.maximum(own, beyond).min(axis=0)

    def _released(self) -> np.ndarray:
        """Clients holding an SX/SY event the feature frontier has reached (their partition's
        features moved on: a client whose SZ stopped gets its final answers by event time)."""
        mine = np.flatnonzero(self.owed != NOT_OWED)
        if not len(mine):
            return mine
        return mine[self.owed[mine] <= self._feature_frontier(mine)]

    def _enter(self, accepted: list[_Accepted]) -> np.ndarray:
        """Accepted inputs into the history and the events; returns the clients fresh inputs
        touched (they owe an answer from their earliest time touched)."""
        self._lows = None
        self._bases = None
        new_events: list[tuple[np.ndarray, np.ndarray]] = []  # (keys, trigger codes)
        for inputs in accepted:
            keys = inputs.codes * KEY_SPAN + inputs.ts
            if inputs.field in CATEGORICAL_SENSORS:
                history = self.sx if inputs.field == "SX" else self.sy
                history.insert(keys, sort_by="value", value=inputs.values,
                               offset=inputs.offsets)
                trigger = TRIGGERS.index(inputs.field)
                new_events.append((keys, np.full(len(keys), trigger, dtype=np.int64)))
        completed = self._enter_features([a for a in accepted if a.field in FEATURES])
        new_events.append((completed, np.full(len(completed), TRIGGERS.index("SZ"),
                                              dtype=np.int64)))
        self._add_events(np.concatenate([k for k, _ in new_events]),
                         np.concatenate([t for _, t in new_events]))
        # answer what fresh inputs touched (replays were answered before the checkpoint)
        codes = np.concatenate([a.codes[a.fresh] for a in accepted])
        np.minimum.at(self.owed, codes, np.concatenate([a.ts[a.fresh] for a in accepted]))
        return codes

    def _decode(self, topic: str, work: list[tuple[int, InputBatch]]
                ) -> tuple[Emission, _Accepted | None]:
        """A topic's batches decoded and judged: dead letters for bad and late rows, and the
        accepted rows (valid, not replays, not late) in arrival order."""
        field_name = self.config.input_topics[topic]
        merged = InputBatch(topic, -1, np.concatenate([b.offsets for _, b in work]),
                            [k for _, b in work for k in b.keys],
                            [v for _, b in work for v in b.values],
                            merged_timestamps([b for _, b in work]))
        sizes = [len(b) for _, b in work]
        row_partition = np.repeat([p for p, _ in work], sizes)
        states = [self.partitions[p] for p, _ in work]
        # per row: below `replay` its partition's messages are replays; below `needed`, replays
        # of what the checkpoint no longer needed
        replay = np.repeat([s.replay_until.get(topic, 0) for s in states], sizes)
        needed = np.repeat([s.needed_from.get(topic, 0) for s in states], sizes)
        for p, b in work:
            self.partitions[p].position[topic] = int(b.offsets[-1]) + 1
        decoded = (decode_readings(merged, field_name, self.config.max_event_time_skew_ms)
                   if field_name in CATEGORICAL_SENSORS
                   else decode_features(merged, field_name))
        bad = np.flatnonzero(decoded.reasons != None)  # noqa: E711 - elementwise
        emission = Emission(dead_letters=[
            DeadLetter(str(decoded.reasons[i]), topic, int(row_partition[i]),
                       int(merged.offsets[i]), merged.keys[i], merged.values[i])
            for i in bad if merged.offsets[i] >= replay[i]])
        rows = np.flatnonzero(decoded.reasons == None)  # noqa: E711 - positions in `merged`
        table = decoded.table
        if table.num_rows == 0:
            return emission, None
        offsets = decoded.offsets
        part = row_partition[rows]
        fresh = offsets >= replay[rows]
        skip = ~fresh & (offsets < needed[rows])
        if not fresh.all():
            judged = np.fromiter((p * OFFSET_SPAN + o for p, s in self.partitions.items()
                                  for o in s.late_offsets.get(topic, ())), np.int64)
            skip |= ~fresh & np.isin(part * OFFSET_SPAN + offsets, judged)
        codes, new = self.clients.encode(table["client"].to_pylist())
        if new and int(codes.max()) >= MAX_CLIENT_CODES:
            raise OverflowError(f"more than {MAX_CLIENT_CODES} clients in one processor")
        self._grow(new)
        self.client_partition[codes] = part
        ts = table["timestamp_ms"].to_numpy()
        f = FIELD_INDEX[field_name]
        lateness = np.zeros(len(ts), dtype=np.int8)
        if fresh.any():
            lateness[fresh] = sliding_lateness(self.window, codes[fresh], ts[fresh],
                                               self.stream_time[f], part[fresh],
                                               self.partition_time[f])
            np.maximum.at(self.stream_time[f], codes[fresh], ts[fresh])
            np.maximum.at(self.partition_time[f], part[fresh], ts[fresh])
        late = lateness != ON_TIME
        if late.any():
            for p, o in zip(part[late].tolist(), offsets[late].tolist(), strict=True):
                self.partitions[p].late_offsets.setdefault(topic, set()).add(o)
            if field_name in CATEGORICAL_SENSORS:
                reasons = {
                    False: (f"late: beyond {self.config.grace_ms} ms grace for {field_name} "
                            "of its client (sensor join)"),
                    True: (f"late: {self.config.max_lateness_ms} ms (max lateness) or more "
                           f"behind its partition's stream time for {field_name} (sensor "
                           "join)"),
                }
                emission.dead_letters.extend(
                    DeadLetter(reasons[bool(why == LATE_BY_PARTITION_TIME)], topic,
                               int(row_partition[i]), int(merged.offsets[i]), merged.keys[i],
                               merged.values[i])
                    for i, why in zip(rows[late].tolist(), lateness[late].tolist(),
                                      strict=True))
                self.counts["late"] += int(late.sum())
            else:  # a window processor's re-emission after its restart: see the module doc
                self.counts["features_replayed"] += int(late.sum())
        keep = ~late & ~skip
        if not keep.any():
            return emission, None
        if field_name in CATEGORICAL_SENSORS:
            values = table["value"].to_numpy().astype(np.int64)[keep]
            versions = None
        else:
            values = table["bin"].to_numpy()[keep]
            names = table["edges_version"].to_pylist()
            versions = np.array([self._version_code(v) for v in names],
                                dtype=np.int64)[keep]
        return emission, _Accepted(field_name, codes[keep], ts[keep], values, versions,
                                   offsets[keep], fresh[keep])

    def _enter_features(self, inputs: list[_Accepted]) -> np.ndarray:
        """Feature rows into the SZ history (the last message of a (client, feature, time)
        wins); returns the keys of the readings that became complete (all three features)."""
        if not inputs:
            return np.empty(0, dtype=np.int64)
        keys_all = np.unique(np.concatenate([a.codes * KEY_SPAN + a.ts for a in inputs]))
        at = self.sz.find(keys_all)
        was_complete = np.zeros(len(keys_all), dtype=bool)
        known = at >= 0
        was_complete[known] = (self.sz.cols["bins"][at[known]] != MISSING).all(axis=1)
        missing = keys_all[~known]
        if len(missing):
            blank = np.full((len(missing), len(FEATURES)), MISSING, dtype=np.int64)
            self.sz.insert(missing, bins=blank, edges=np.full_like(blank, NO_VERSION),
                           offsets=blank.copy())
        for inputs_of in inputs:
            keys = inputs_of.codes * KEY_SPAN + inputs_of.ts
            # the last message per key in arrival order
            last = len(keys) - 1 - np.unique(keys[::-1], return_index=True)[1]
            slot = self.sz.find(keys[last])
            k = FEATURES.index(inputs_of.field)
            self.sz.cols["bins"][slot, k] = inputs_of.values[last]
            assert inputs_of.versions is not None
            self.sz.cols["edges"][slot, k] = inputs_of.versions[last]
            self.sz.cols["offsets"][slot, k] = inputs_of.offsets[last]
        now = self.sz.find(keys_all)
        is_complete = (self.sz.cols["bins"][now] != MISSING).all(axis=1)
        return keys_all[is_complete & ~was_complete]

    def _add_events(self, keys: np.ndarray, triggers: np.ndarray) -> None:
        """New events (one per (key, trigger): duplicates collapse)."""
        if not len(keys):
            return
        order = np.lexsort((triggers, keys))
        keys, triggers = keys[order], triggers[order]
        first = np.r_[True, (keys[1:] != keys[:-1]) | (triggers[1:] != triggers[:-1])]
        keys, triggers = keys[first], triggers[first]
        held = self.events.find(keys, triggers, tie="trigger")
        keys, triggers = keys[held < 0], triggers[held < 0]
        n = len(keys)
        self.events.insert(keys, sort_by="trigger", trigger=triggers,
                           sent=np.full((n, len(VECTOR_FIELDS)), MISSING),
                           sent_edges=np.full((n, len(FEATURES)), NO_VERSION))

    def _answer_clients(self, clients: np.ndarray, force: bool) -> Emission:
        """Answer what `clients` owe, except those of partitions still replaying."""
        clients = np.unique(clients)
        clients = clients[self.owed[clients] != NOT_OWED]
        if self._replaying:
            clients = clients[~np.isin(self.client_partition[clients], list(self._replaying))]
        if not len(clients):
            return Emission()
        earliest = self.owed[clients]
        self.owed[clients] = NOT_OWED
        self._pruned = False  # what was owed no longer holds their history
        return self._answer(clients, earliest, force)

    def _answer(self, touched: np.ndarray, earliest: np.ndarray, force: bool) -> Emission:
        """Compute again every event of the clients `touched` at or after their `earliest`
        time; publish the vectors that are new or changed.

        An SX or SY event whose client's features have not reached its time yet is held
        (unless `force`): with a backlog the join reads SX and SY far ahead of the feature
        topics, and answering at once would correct each such event once per SZ reading
        before it. It is answered when the features reach its time, or when the partition is
        consumed to its end (`tick_many`): live, that is the same poll."""
        events = self.events
        lo = np.searchsorted(events.key, touched * KEY_SPAN + earliest, side="left")
        hi = np.searchsorted(events.key, (touched + 1) * KEY_SPAN, side="left")
        rows = ranges(lo, hi)
        if not len(rows):
            return Emission()
        # the touched clients' complete SZ readings (an as-of lookup never crosses clients:
        # the others' rows cannot change an answer, and are not copied)
        sz_key = self.sz.key
        sz_rows = ranges(np.searchsorted(sz_key, touched * KEY_SPAN, side="left"),
                         np.searchsorted(sz_key, (touched + 1) * KEY_SPAN, side="left"))
        sz_complete = sz_rows[(self.sz.cols["bins"][sz_rows] != MISSING).all(axis=1)]
        vectors, at = vectors_as_of(events.key[rows], self.sx.key, self.sx.cols["value"],
                                    self.sy.key, self.sy.cols["value"],
                                    sz_key[sz_complete],
                                    self.sz.cols["bins"][sz_complete])
        answered = complete(vectors)
        if not force:
            clients = events.key[rows] // KEY_SPAN
            held = answered & (events.cols["trigger"][rows] != TRIGGERS.index("SZ")) & (
                events.key[rows] % KEY_SPAN > self._feature_frontier(clients))
            if held.any():
                np.minimum.at(self.owed, clients[held], events.key[rows][held] % KEY_SPAN)
                answered &= ~held
        edges = np.full((len(rows), len(FEATURES)), NO_VERSION, dtype=np.int64)
        edges[answered] = self.sz.cols["edges"][sz_complete[at[answered]]]
        sent, sent_edges = events.cols["sent"][rows], events.cols["sent_edges"][rows]
        first = sent[:, 0] == MISSING
        changed = answered & ((sent != vectors).any(axis=1) | (sent_edges != edges).any(axis=1))
        self.counts["incomplete"] += int((~answered & first).sum())
        if not changed.any():
            return Emission()
        publish = rows[changed]
        events.cols["sent"][publish] = vectors[changed]
        events.cols["sent_edges"][publish] = edges[changed]
        self.counts["corrections"] += int((changed & ~first).sum())
        return Emission(batches=[self._predictions(
            events.key[publish], events.cols["trigger"][publish], vectors[changed],
            edges[changed])])

    def _predictions(self, keys: np.ndarray, triggers: np.ndarray, vectors: np.ndarray,
                     edges: np.ndarray) -> OutputBatch:
        model = pinned(self.config.model)  # one model for the batch, even if swapped meanwhile
        probability = predict_many(model, vectors)
        alert = probability >= self.config.threshold
        names = self.clients.names
        clients = [names[c] for c in (keys // KEY_SPAN).tolist()]
        labels = self._edges_labels(edges)
        threshold, version = self.config.threshold, model.version
        out_keys, values = [], []
        for client, t, trigger, vector, p, a, label in zip(
                clients, (keys % KEY_SPAN).tolist(), triggers.tolist(), vectors.tolist(),
                probability.tolist(), alert.tolist(), labels, strict=True):
            name = TRIGGERS[trigger]
            out_keys.append(f"{client}|{t}|{name}")
            values.append(orjson.dumps({
                "v": SENSOR_SCHEMA_VERSION, "client": client, "timestamp_ms": t,
                "trigger": name, "vector": vector, "probability": p, "alert": a,
                "threshold": threshold, "model_version": version, "edges_version": label,
            }))
        self.counts["predictions"] += len(values)
        return OutputBatch(self.config.output_topic, out_keys, values, clients)

    def _edges_labels(self, edges: np.ndarray) -> list[str]:
        """Per row: one version when FA, FI, FD agree (the normal case), else
        `FA=a,FI=b,FD=c`."""
        if len(edges) and (edges == edges[0, 0]).all():  # one version for every row
            return [self.edges_versions[int(edges[0, 0])]] * len(edges)
        labels: dict[tuple[int, ...], str] = {}
        out = []
        for row in map(tuple, edges.tolist()):
            label = labels.get(row)
            if label is None:
                versions = [self.edges_versions[c] for c in row]
                label = labels[row] = versions[0] if len(set(versions)) == 1 else ",".join(
                    f"{n}={v}" for n, v in zip(FEATURES, versions, strict=True))
            out.append(label)
        return out

    # --- bounded state -----------------------------------------------------------------------
    def settled_until(self) -> np.ndarray:
        """Per client, `L`: no accepted input can lie at or before it any more, nor an owed
        answer; NO_STREAM_TIME while a topic has no bound for it or its partition replays.

        Per topic, an input at or before max(client's stream time - grace, partition's stream
        time - max lateness) is late (`features.windows.SlidingWindow.final_until`); `L` is the
        least of the five. The partition's term is what lets a client one of whose inputs
        stopped settle: its own stream time in that topic stays, its partition's moves on."""
        partition_time = self._client_partition_time()
        final = self.window.final_until(self.stream_time, partition_time)
        seen = ((self.stream_time != NO_STREAM_TIME)
                | (partition_time != NO_STREAM_TIME)).all(axis=0)
        # while its partition replays, a client's history is incomplete: nothing is settled
        replaying = [p for p, state in self.partitions.items() if not state.caught_up()]
        seen &= ~np.isin(self.client_partition, replaying)
        bound = np.minimum(final.min(axis=0), self.owed - 1)  # an owed answer needs its events
        return np.where(seen, bound, NO_STREAM_TIME)

    def prune(self) -> None:
        """Drop history and events no answer can need (see the module docstring). Once per
        checkpoint, not once per partition: nothing changes between their snapshots.

        The rows kept at or before `L` (per client the latest SX, SY and complete SZ reading,
        for as-of lookups) become **base rows**: their offsets are forgotten (-1) and the
        checkpoint carries their values instead, so they hold no commit offset back (a client
        whose SX stopped keeps its last SX for ever, and the SX partition's offset moves on)."""
        if self._pruned:
            return
        self._pruned = True
        settled = self.settled_until()
        last = self._settled_at_prune
        if last is not None and len(last) == len(settled) and not (settled > last).any():
            # no client's L rose since the last pass: every row at or before it was dropped or
            # made a base row then, and a row accepted since lies after it (it was not late),
            # so a pass over every held row would change nothing (a client whose SX stopped
            # holds every later event: the pass grew with them, once a checkpoint)
            self._prune_at = max(PRUNE_MIN, 2 * (len(self.events) + len(self.sz)))
            return
        self._settled_at_prune = settled
        for history in (self.sx, self.sy):
            history.keep(_keep_latest_before(history.key, settled))
            history.cols["offset"][_at_or_before(history.key, settled)] = -1
        bins = self.sz.cols["bins"]
        whole = (bins != MISSING).all(axis=1)
        before = _at_or_before(self.sz.key, settled)
        latest = _keep_latest_before(self.sz.key[whole], settled)
        keep = ~before
        keep[np.flatnonzero(whole)[latest & before[whole]]] = True
        self.sz.keep(keep)
        self.sz.cols["offsets"][_at_or_before(self.sz.key, settled)] = -1
        self.events.keep(~_at_or_before(self.events.key, settled))
        self._lows = None
        self._bases = None
        self._prune_at = max(PRUNE_MIN, 2 * (len(self.events) + len(self.sz)))

    # --- offsets and checkpoints -------------------------------------------------------------
    def commit_offset(self, partition: int, topic: str) -> int | None:
        """The earliest offset of `topic` a held history row of `partition` came from, else the
        next offset (None: nothing consumed yet)."""
        position = self.partitions[partition].position.get(topic)
        if position is None:
            return None
        if self._lows is None:
            self._lows = self._held_offsets()
        return min(position, self._lows.get((partition, topic), position))

    def _held_offsets(self) -> dict[tuple[int, str], int]:
        """Per (partition, topic): the earliest offset a held row came from."""
        top = max(self.partitions, default=-1) + 1
        lows: dict[tuple[int, str], int] = {}
        by_field = {name: topic for topic, name in self.config.input_topics.items()}
        sources: list[tuple[str, np.ndarray, np.ndarray]] = [
            (by_field["SX"], self.sx.key, self.sx.cols["offset"]),
            (by_field["SY"], self.sy.key, self.sy.cols["offset"])]
        sources += [(by_field[name], self.sz.key, self.sz.cols["offsets"][:, k])
                    for k, name in enumerate(FEATURES)]
        for topic, keys, offsets in sources:
            held = offsets >= 0
            if not held.any():
                continue
            low = np.full(top, np.iinfo(np.int64).max, dtype=np.int64)
            part = self.client_partition[keys[held] // KEY_SPAN]
            mine = part >= 0
            np.minimum.at(low, part[mine], offsets[held][mine])
            for p in self.partitions:
                if low[p] != np.iinfo(np.int64).max:
                    lows[(p, topic)] = int(low[p])
        return lows

    def snapshot(self, partition: int) -> Snapshot:
        """Small: the partition's clients' stream times and offsets (the history is rebuilt
        from the log on restore). Also drops what no answer can need, so the commit offsets
        asked for next are as far along as they can be."""
        self.prune()
        state = self.partitions[partition]
        topics = sorted(set(state.position) | set(state.replay_until))
        needed = {}
        for topic in topics:
            committed = self.commit_offset(partition, topic)
            needed[topic] = (state.needed_from.get(topic, 0) if committed is None
                             else committed)
            late = state.late_offsets.get(topic, set())
            state.late_offsets[topic] = {o for o in late if o >= needed[topic]}
        mine = np.flatnonzero(self.client_partition == partition)
        return {
            "version": SNAPSHOT_VERSION,
            "next_offsets": {t: max(state.position.get(t, 0), state.replay_until.get(t, 0))
                             for t in topics},
            "needed_from": needed,
            "late_offsets": {t: sorted(state.late_offsets.get(t, ())) for t in topics},
            "clients": [self.clients.names[i] for i in mine.tolist()],
            "stream_time": self.stream_time[:, mine].tolist(),
            "partition_time": self._partition_times(partition).tolist(),
            "owed": self.owed[mine].tolist(),
            "base": self._base_rows(partition),
            "edges_versions": list(self.edges_versions),
        }

    def _partition_times(self, partition: int) -> np.ndarray:
        if partition < self.partition_time.shape[1]:
            return self.partition_time[:, partition]
        return np.full(len(VECTOR_FIELDS), NO_STREAM_TIME, dtype=np.int64)

    def _base_rows(self, partition: int) -> dict[str, str]:
        """The base rows (see :meth:`prune`) of the clients of `partition`: rows the log no
        longer gives back on restart, per history a table packed by :func:`pack_rows`. A row is
        its client's index among the partition's clients (the snapshot's `clients` order), event
        time and value (SX, SY) or FA, FI, FD bins and edges versions (indices into the
        snapshot's `edges_versions`) (SZ). Computed for every partition in one pass and cached
        until the history changes (a checkpoint asks for each partition in turn)."""
        if self._bases is None:
            self._bases = self._all_base_rows()
        return self._bases.get(partition, {})

    def _all_base_rows(self) -> dict[int, dict[str, str]]:
        part = self.client_partition
        order = np.argsort(part, kind="stable")
        index = np.empty(len(part), dtype=np.int64)  # a client's rank in its partition
        index[order] = np.arange(len(part)) - np.searchsorted(part[order], part[order], "left")
        bins, edges = self.sz.cols["bins"], self.sz.cols["edges"]
        # SZ: complete rows holding a value no message gives back (a replayed message may have
        # set one of their offsets again meanwhile)
        sz = np.flatnonzero((bins != MISSING).all(axis=1)
                            & (self.sz.cols["offsets"] < 0).any(axis=1))
        sources = [
            ("SX", self.sx.key, np.flatnonzero(self.sx.cols["offset"] < 0),
             self.sx.cols["value"][:, None]),
            ("SY", self.sy.key, np.flatnonzero(self.sy.cols["offset"] < 0),
             self.sy.cols["value"][:, None]),
            ("SZ", self.sz.key, sz, np.c_[bins, edges]),
        ]
        out: dict[int, dict[str, str]] = {}
        for name, keys, at, values in sources:
            codes = keys[at] // KEY_SPAN
            partitions = part[codes]
            mine = partitions >= 0
            at, codes, partitions = at[mine], codes[mine], partitions[mine]
            if not len(at):
                continue
            by_partition = np.argsort(partitions, kind="stable")
            at, codes, partitions = at[by_partition], codes[by_partition], partitions[by_partition]
            table = np.c_[index[codes], keys[at] % KEY_SPAN, values[at]]
            starts = np.flatnonzero(np.r_[True, partitions[1:] != partitions[:-1]])
            for first, last in zip(starts.tolist(), np.r_[starts[1:], len(partitions)].tolist(),
                                   strict=True):
                out.setdefault(int(partitions[first]), {})[name] = pack_rows(table[first:last])
        return out

    def _restore_base_rows(self, codes: np.ndarray, base: dict[str, str],
                           edges_versions: list[str]) -> None:
        for name, history in (("SX", self.sx), ("SY", self.sy)):
            rows = unpack_rows(base.get(name, ""), 3)
            history.insert(codes[rows[:, 0]] * KEY_SPAN + rows[:, 1], sort_by="value",
                           value=rows[:, 2], offset=np.full(len(rows), -1, dtype=np.int64))
        width = len(FEATURES)
        sz = unpack_rows(base.get("SZ", ""), 2 + 2 * width)
        if not len(sz):
            return
        mapping = np.array([self._version_code(v) for v in edges_versions], dtype=np.int64)
        self.sz.insert(codes[sz[:, 0]] * KEY_SPAN + sz[:, 1], bins=sz[:, 2:2 + width],
                       edges=mapping[sz[:, 2 + width:]],
                       offsets=np.full((len(sz), width), -1, dtype=np.int64))

    def restore(self, partition: int, snapshot: Snapshot) -> None:
        if snapshot.get("version") not in RESTORABLE:
            raise ValueError(f"unsupported sensor join snapshot: {snapshot.get('version')} "
                             "(a checkpoint of an older Braid: start a new consumer group)")
        codes, new = self.clients.encode(list(snapshot["clients"]))
        self._grow(new)
        if partition >= self.partition_time.shape[1]:
            grown = np.full((len(VECTOR_FIELDS), partition + 1), NO_STREAM_TIME, dtype=np.int64)
            grown[:, :self.partition_time.shape[1]] = self.partition_time
            self.partition_time = grown
        state = self.partitions.setdefault(partition, _Partition())
        state.replay_until = {t: int(o) for t, o in snapshot["next_offsets"].items()}
        state.needed_from = {t: int(o) for t, o in snapshot["needed_from"].items()}
        state.late_offsets = {t: {int(o) for o in offsets}
                              for t, offsets in snapshot["late_offsets"].items()}
        if not state.caught_up():
            self._replaying.add(partition)
        self._pruned = False
        if len(codes) == 0:  # a partition that had seen offsets but no client yet
            return
        self.client_partition[codes] = partition
        self.stream_time[:, codes] = np.asarray(snapshot["stream_time"],
                                                dtype=np.int64).reshape(-1, len(codes))
        # version 2 kept no partition times: the largest of its clients' (each counts every
        # input it saw)
        self.partition_time[:, partition] = np.asarray(
            snapshot.get("partition_time", self.stream_time[:, codes].max(axis=1)),
            dtype=np.int64)
        self.owed[codes] = np.asarray(snapshot["owed"], dtype=np.int64)
        self._restore_base_rows(codes, snapshot.get("base", {}),
                                snapshot.get("edges_versions", []))
        self._bases = None


def pack_rows(table: np.ndarray) -> str:
    """An int64 table as text for a JSON checkpoint: base64 of its little-endian bytes (a
    checkpoint is written every second; a list of lists per row costs tens of ms)."""
    return base64.b64encode(np.ascontiguousarray(table, dtype="<i8").tobytes()).decode()


def unpack_rows(text: str, width: int) -> np.ndarray:
    """The table :func:`pack_rows` packed, `width` columns."""
    return np.frombuffer(base64.b64decode(text), dtype="<i8").astype(np.int64).reshape(-1, width)


def _at_or_before(keys: np.ndarray, settled: np.ndarray) -> np.ndarray:
    """Rows whose event time is at or before their client's settled time."""
    bound = settled[keys // KEY_SPAN]
    return (bound != NO_STREAM_TIME) & (keys % KEY_SPAN <= bound)


def _keep_latest_before(keys: np.ndarray, settled: np.ndarray) -> np.ndarray:
    """Rows after their client's settled time, and per client the last row at or before it
    (`keys` sorted; at a tie the last row is the largest value)."""
    before = _at_or_before(keys, settled)
    last_before = before & np.r_[~before[1:] | (keys[1:] // KEY_SPAN != keys[:-1] // KEY_SPAN),
                                 True]
    return ~before | last_before


class SensorJoinOperator(PartitionOperator):
    """One partition's handle on a :class:`SensorJoinGroup` (a private one if none given)."""

    def __init__(self, config: SensorJoinConfig, partition: int,
                 group: SensorJoinGroup | None = None) -> None:
        self.config = config
        self.partition = partition
        self.group = group if group is not None else SensorJoinGroup(config)
        self.group.open(partition)

    @property
    def counts(self) -> Counter[str]:
        return self.group.counts

    @classmethod
    def process_many(cls, work: Sequence[tuple[PartitionOperator, InputBatch]],
                     now_ms: int) -> Emission:
        return process_by_group(work, now_ms)

    @classmethod
    def tick_many(cls, operators: Sequence[PartitionOperator], now_ms: int) -> Emission:
        emission = Emission()
        by_group: dict[int, tuple[SensorJoinGroup, set[int]]] = {}
        for operator in operators:
            assert isinstance(operator, SensorJoinOperator)
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
        return self.group.commit_offset(self.partition, topic)

    def snapshot(self) -> Snapshot:
        return self.group.snapshot(self.partition)

    def restore(self, snapshot: Snapshot) -> None:
        self.group.restore(self.partition, snapshot)

"""The join-and-predict operator: SX, SY, FA, FI, FD per client -> alert predictions.

The five input topics are co-partitioned (keyed by client, same partition count), so one
operator per partition number sees every event of its clients. Per client it keeps, for each
field of the vector (SX, SY, FA bin, FI bin, FD bin), the value with the latest event time and
that time:

- an event is **stale** when its event time is older than the value held for its field (a late
  event never overwrites a newer value): it changes nothing and triggers no prediction;
- otherwise it replaces the field's value (equal event times: the later arrival wins) and, once
  the client has all five fields, triggers a prediction for its event time: the vector in
  `VECTOR_FIELDS` order, the probability from the :class:`AlertModel`, the alert decision
  (`probability >= threshold`), the model and bin-edges versions, keyed by client;
- the window processor emits a reading's FA, FI and FD together, so one poll usually carries
  all three: a feature event then sees the poll's other features as of its own time (not the
  values held after the whole topic was joined, which would give an earlier reading a later
  one's bins when the poll carries several readings of a client), and the reading gets one
  prediction, at its last feature. The result is the vector training builds for the reading
  (`training.sensors_baseline`; `tests/unit/test_sensors_training_serving_skew.py`);
- invalid events (undecodable, schema, SX/SY outside 0..9, bins outside 0..9) go to the
  dead-letter topic with the reason.

State is small (five values per client), so a partition's checkpoint holds all of it with the
next offset of every topic; the commit offset is the next offset, and replayed messages (below
the checkpointed offsets, already reflected in the state) are skipped. The operators of one
processor share a :class:`SensorJoinGroup`: one poll's batches of every partition are joined in
one vectorized pass per topic (SX and SY first, then the feature topics).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import orjson
import pyarrow as pa

from features.event_time import DEFAULT_MAX_EVENT_TIME_SKEW_MS
from features.sensors.model import AlertModel, pinned, predict_many
from features.sensors.schemas import (
    CATEGORICAL_SENSORS,
    FEATURES,
    SENSOR_SCHEMA_VERSION,
    VECTOR_FIELDS,
)
from features.windows import NO_STREAM_TIME, stream_time_before
from streaming.processors.sensor_decoding import decode_features, decode_readings
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
NO_VERSION = -1


@dataclass(frozen=True)
class SensorJoinConfig:
    input_topics: dict[str, str]  # topic -> field (SX, SY, FA, FI, FD)
    output_topic: str
    model: AlertModel
    threshold: float = 0.5
    # how far an SX/SY reading's event time may lie ahead of its Kafka timestamp
    # (features.event_time)
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS

    def __post_init__(self) -> None:
        if sorted(self.input_topics.values()) != sorted(VECTOR_FIELDS):
            raise ValueError(f"join needs one input topic per field of {VECTOR_FIELDS}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"alert threshold must be in [0, 1], got {self.threshold}")


@dataclass
class _Partition:
    """Per input topic of one partition: the next offset, and the checkpointed one below which
    messages are replays already reflected in the state."""

    position: dict[str, int] = field(default_factory=dict)
    replay_until: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Live:
    """One topic's events of a poll that change the state, in arrival order."""

    field: str  # SX, SY, FA, FI, FD
    codes: np.ndarray  # client codes
    ts: np.ndarray  # event times
    values: np.ndarray  # SX/SY values or feature bins
    versions: np.ndarray | None  # features: edges version codes

    @cached_property
    def _order(self) -> np.ndarray:
        """The events sorted by client, event time, arrival."""
        return np.lexsort((np.arange(len(self.ts)), self.ts, self.codes))

    def as_of(self, codes: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Per (client, time): the index of this topic's latest event of that client with
        event time <= time (equal times: the later arrival), or -1."""
        if len(self.ts) == 0 or len(ts) == 0:
            return np.full(len(ts), -1, dtype=np.int64)
        order = self._order
        base = int(min(self.ts.min(), ts.min()))
        span = int(max(self.ts.max(), ts.max())) - base + 1
        keys = self.codes[order].astype(np.int64) * span + (self.ts[order] - base)
        pos = np.searchsorted(keys, codes.astype(np.int64) * span + (ts - base),
                              side="right") - 1
        found = pos >= 0
        found[found] = self.codes[order][pos[found]] == codes[found]
        return np.where(found, order[np.maximum(pos, 0)], -1)


class SensorJoinGroup:
    """The state of every partition one processor owns (clients never span partitions), so
    one poll's batches of every partition are joined in one vectorized pass per topic."""

    def __init__(self, config: SensorJoinConfig) -> None:
        self.config = config
        self.clients = KeyCodes()
        self.client_partition = np.empty(0, dtype=np.int64)
        n = len(VECTOR_FIELDS)
        self.field_ts = np.empty((n, 0), dtype=np.int64)
        self.field_value = np.empty((n, 0), dtype=np.int64)
        self.edges_versions: list[str] = []
        self.field_edges = np.empty((len(FEATURES), 0), dtype=np.int64)  # codes into the list
        self.partitions: dict[int, _Partition] = {}
        self.counts: Counter[str] = Counter()

    def open(self, partition: int) -> None:
        """Start a partition afresh (assignment): forget anything held for it."""
        self.close(partition)
        self.partitions[partition] = _Partition()

    def close(self, partition: int) -> None:
        """Forget a partition's clients (revocation)."""
        self.partitions.pop(partition, None)
        mine = self.client_partition == partition
        if mine.any():
            self.field_ts[:, mine] = NO_STREAM_TIME
            self.field_value[:, mine] = 0
            self.field_edges[:, mine] = NO_VERSION
            self.client_partition[mine] = -1

    def _grow(self, new: int) -> None:
        if new:
            n = len(VECTOR_FIELDS)
            self.field_ts = np.c_[self.field_ts, np.full((n, new), NO_STREAM_TIME)]
            self.field_value = np.c_[self.field_value, np.zeros((n, new), dtype=np.int64)]
            self.field_edges = np.c_[self.field_edges,
                                     np.full((len(FEATURES), new), NO_VERSION)]
            self.client_partition = np.r_[self.client_partition, np.full(new, -1, np.int64)]

    def _version_code(self, version: str) -> int:
        if version not in self.edges_versions:
            self.edges_versions.append(version)
        return self.edges_versions.index(version)

    def process_many(self, work: Sequence[tuple[int, InputBatch]], now_ms: int) -> Emission:
        """One poll's batches (partition, batch): per topic, all partitions in one pass; the
        feature topics (FA, FI, FD) of the poll together (see `_join`)."""
        emission = Emission()
        by_topic: dict[str, list[tuple[int, InputBatch]]] = {}
        for partition, batch in work:
            if len(batch):
                by_topic.setdefault(batch.topic, []).append((partition, batch))
        features: list[_Live] = []
        for topic, batches in by_topic.items():
            letters, live = self._decode(topic, batches)
            emission.extend(letters)
            if live is None:
                continue
            if live.field in CATEGORICAL_SENSORS:
                emission.extend(self._join(live, (), ()))
            else:
                features.append(live)
        for k, live in enumerate(features):
            emission.extend(self._join(live, features, features[k + 1:]))
        return emission

    def _decode(self, topic: str, work: list[tuple[int, InputBatch]]
                ) -> tuple[Emission, _Live | None]:
        """A topic's batches decoded: dead letters for bad rows, and the rows that change the
        state (valid, not replays, not stale)."""
        field_name = self.config.input_topics[topic]
        merged = InputBatch(topic, -1, np.concatenate([b.offsets for _, b in work]),
                            [k for _, b in work for k in b.keys],
                            [v for _, b in work for v in b.values],
                            merged_timestamps([b for _, b in work]))
        sizes = [len(b) for _, b in work]
        row_partition = np.repeat([p for p, _ in work], sizes)
        # per row: the offset below which its partition's messages are replays
        replay = np.repeat([self.partitions[p].replay_until.get(topic, 0) for p, _ in work],
                           sizes)
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
        valid = decoded.reasons == None  # noqa: E711 - elementwise
        part = row_partition[valid]
        fresh = decoded.offsets >= replay[valid]
        table = decoded.table.filter(pa.array(fresh)) if not fresh.all() else decoded.table
        if table.num_rows == 0:
            return emission, None
        codes, new = self.clients.encode(table["client"].to_pylist())
        self._grow(new)
        self.client_partition[codes] = part[fresh]
        f = VECTOR_FIELDS.index(field_name)
        ts = table["timestamp_ms"].to_numpy()
        if field_name in CATEGORICAL_SENSORS:
            values = table["value"].to_numpy().astype(np.int64)
            versions = None
        else:
            values = table["bin"].to_numpy()
            versions = np.array([self._version_code(v)
                                 for v in table["edges_version"].to_pylist()], dtype=np.int64)
        stale = ts < stream_time_before(codes, ts, self.field_ts[f])
        self.counts["stale"] += int(stale.sum())
        live = np.flatnonzero(~stale)
        return emission, _Live(field_name, codes[live], ts[live], values[live],
                               None if versions is None else versions[live])

    def _join(self, live: _Live, same_poll: Sequence[_Live], later: Sequence[_Live]
              ) -> Emission:
        """Each live event's prediction, and the held values updated.

        The vector an event sees: the held values with its own field replaced; for a feature
        event, the other features of the same poll override the held ones as of its time (the
        latest with event time <= its own), so a reading whose FA, FI, FD arrive in one poll is
        predicted from its own three bins even when one poll carries several readings of a
        client (topic by topic, an earlier reading would see a later one's bins). Such a
        reading gets one prediction, at its last feature (`later`: the poll's features joined
        after this one), not one per feature."""
        f = VECTOR_FIELDS.index(live.field)
        codes, ts, values = live.codes, live.ts, live.values
        vectors = self.field_value[:, codes].T.copy()
        vectors[:, f] = values
        known = self.field_ts[:, codes].T != NO_STREAM_TIME
        known[:, f] = True
        edges = self.field_edges[:, codes].T.copy()
        if live.versions is not None:
            edges[:, FEATURES.index(live.field)] = live.versions
        for other in same_poll:
            if other.field == live.field:
                continue
            at = other.as_of(codes, ts)
            found = at >= 0
            g = VECTOR_FIELDS.index(other.field)
            vectors[found, g] = other.values[at[found]]
            known[found, g] = True
            if other.versions is not None:
                edges[found, FEATURES.index(other.field)] = other.versions[at[found]]
        # the new held values: each client's last live event (its latest event time)
        last = len(codes) - 1 - np.unique(codes[::-1], return_index=True)[1]
        self.field_ts[f, codes[last]] = ts[last]
        self.field_value[f, codes[last]] = values[last]
        if live.versions is not None:
            self.field_edges[FEATURES.index(live.field), codes[last]] = live.versions[last]
        complete = known.all(axis=1)
        self.counts["incomplete"] += int((~complete).sum())
        for other in later:  # the same reading's prediction comes with a later feature
            at = other.as_of(codes, ts)
            hits = np.flatnonzero(at >= 0)
            complete[hits[other.ts[at[hits]] == ts[hits]]] = False
        if not complete.any():
            return Emission()
        return Emission(batches=[self._predictions(
            live.field, codes[complete], ts[complete], vectors[complete], edges[complete])])

    def _predictions(self, trigger: str, codes: np.ndarray, ts: np.ndarray,
                     vectors: np.ndarray, edges: np.ndarray) -> OutputBatch:
        model = pinned(self.config.model)  # one model for the batch, even if swapped meanwhile
        probability = predict_many(model, vectors)
        alert = probability >= self.config.threshold
        names = self.clients.names
        clients = [names[c] for c in codes.tolist()]
        labels = self._edges_labels(edges)
        threshold, version = self.config.threshold, model.version
        values = [
            orjson.dumps({
                "v": SENSOR_SCHEMA_VERSION, "client": client, "timestamp_ms": t,
                "trigger": trigger, "vector": vector, "probability": p, "alert": a,
                "threshold": threshold, "model_version": version, "edges_version": label,
            })
            for client, t, vector, p, a, label in zip(
                clients, ts.tolist(), vectors.tolist(), probability.tolist(), alert.tolist(),
                labels, strict=True)
        ]
        self.counts["predictions"] += len(values)
        return OutputBatch(self.config.output_topic, clients, values, clients)

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

    # --- offsets and checkpoints -------------------------------------------------------------
    def commit_offset(self, partition: int, topic: str) -> int | None:
        return self.partitions[partition].position.get(topic)

    def snapshot(self, partition: int) -> Snapshot:
        state = self.partitions[partition]
        topics = set(state.position) | set(state.replay_until)
        mine = np.flatnonzero(self.client_partition == partition)
        return {
            "version": SNAPSHOT_VERSION,
            "next_offsets": {t: max(state.position.get(t, 0), state.replay_until.get(t, 0))
                             for t in sorted(topics)},
            "clients": [self.clients.names[i] for i in mine.tolist()],
            "field_ts": self.field_ts[:, mine].tolist(),
            "field_value": self.field_value[:, mine].tolist(),
            "edges_versions": self.edges_versions,
            "field_edges": self.field_edges[:, mine].tolist(),
        }

    def restore(self, partition: int, snapshot: Snapshot) -> None:
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported sensor join snapshot: {snapshot.get('version')}")
        codes, new = self.clients.encode(list(snapshot["clients"]))
        self._grow(new)
        n = len(codes)
        state = self.partitions.setdefault(partition, _Partition())
        state.replay_until = {t: int(o) for t, o in snapshot["next_offsets"].items()}
        if n == 0:  # a partition that had seen offsets but no client yet
            return
        self.client_partition[codes] = partition
        self.field_ts[:, codes] = np.asarray(snapshot["field_ts"], dtype=np.int64).reshape(-1, n)
        self.field_value[:, codes] = np.asarray(snapshot["field_value"],
                                                dtype=np.int64).reshape(-1, n)
        saved = list(snapshot["edges_versions"])
        mapping = np.array([self._version_code(v) for v in saved] + [NO_VERSION],
                           dtype=np.int64)
        edges = np.asarray(snapshot["field_edges"], dtype=np.int64).reshape(-1, n)
        self.field_edges[:, codes] = mapping[edges]  # NO_VERSION (-1) maps to the last entry


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

    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        return self.group.process_many([(self.partition, batch)], now_ms)

    def close(self) -> None:
        self.group.close(self.partition)

    def commit_offset(self, topic: str) -> int | None:
        return self.group.commit_offset(self.partition, topic)

    def snapshot(self) -> Snapshot:
        return self.group.snapshot(self.partition)

    def restore(self, snapshot: Snapshot) -> None:
        self.group.restore(self.partition, snapshot)

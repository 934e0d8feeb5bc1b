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
- invalid events (undecodable, schema, SX/SY outside 0..9, bins outside 0..9) go to the
  dead-letter topic with the reason.

State is small (five values per client), so the checkpoint holds all of it with the next offset
of every topic; the commit offset is the next offset, and replayed messages (below the
checkpointed offsets, already reflected in the state) are skipped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa

from features.sensors.model import AlertModel, predict_many
from features.sensors.schemas import (
    CATEGORICAL_SENSORS,
    FEATURES,
    SENSOR_SCHEMA_VERSION,
    VECTOR_FIELDS,
)
from features.windows import NO_STREAM_TIME, stream_time_before
from streaming.processors.sensor_decoding import decode_features, decode_readings
from streaming.runtime.json_batch import dead_letters
from streaming.runtime.key_codes import KeyCodes
from streaming.runtime.operator import PartitionOperator, Snapshot
from streaming.runtime.records import Emission, InputBatch, OutputRecord

SNAPSHOT_VERSION = 1
NO_VERSION = -1


@dataclass(frozen=True)
class SensorJoinConfig:
    input_topics: dict[str, str]  # topic -> field (SX, SY, FA, FI, FD)
    output_topic: str
    model: AlertModel
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if sorted(self.input_topics.values()) != sorted(VECTOR_FIELDS):
            raise ValueError(f"join needs one input topic per field of {VECTOR_FIELDS}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"alert threshold must be in [0, 1], got {self.threshold}")


class SensorJoinOperator(PartitionOperator):
    def __init__(self, config: SensorJoinConfig, partition: int) -> None:
        self.config = config
        self.partition = partition
        self.clients = KeyCodes()
        n = len(VECTOR_FIELDS)
        self.field_ts = np.empty((n, 0), dtype=np.int64)
        self.field_value = np.empty((n, 0), dtype=np.int64)
        self.edges_versions: list[str] = []
        self.field_edges = np.empty((len(FEATURES), 0), dtype=np.int64)  # codes into the list
        self.position: dict[str, int] = {}
        self.replay_until: dict[str, int] = {}
        self.counts: Counter[str] = Counter()

    def _grow(self, new: int) -> None:
        if new:
            n = len(VECTOR_FIELDS)
            self.field_ts = np.c_[self.field_ts, np.full((n, new), NO_STREAM_TIME)]
            self.field_value = np.c_[self.field_value, np.zeros((n, new), dtype=np.int64)]
            self.field_edges = np.c_[self.field_edges,
                                     np.full((len(FEATURES), new), NO_VERSION)]

    def _version_code(self, version: str) -> int:
        if version not in self.edges_versions:
            self.edges_versions.append(version)
        return self.edges_versions.index(version)

    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        field = self.config.input_topics[batch.topic]
        replay_until = self.replay_until.get(batch.topic, 0)
        decoded = (decode_readings(batch, field) if field in CATEGORICAL_SENSORS
                   else decode_features(batch, field))
        emission = Emission(dead_letters=dead_letters(batch, decoded.reasons, replay_until))
        self.position[batch.topic] = int(batch.offsets[-1]) + 1
        fresh = decoded.offsets >= replay_until
        table = decoded.table.filter(pa.array(fresh)) if not fresh.all() else decoded.table
        if table.num_rows == 0:
            return emission
        codes, new = self.clients.encode(table["client"].to_pylist())
        self._grow(new)
        f = VECTOR_FIELDS.index(field)
        ts = table["timestamp_ms"].to_numpy()
        if field in CATEGORICAL_SENSORS:
            values = table["value"].to_numpy().astype(np.int64)
            versions = None
        else:
            values = table["bin"].to_numpy()
            versions = np.array([self._version_code(v)
                                 for v in table["edges_version"].to_pylist()], dtype=np.int64)
        stale = ts < stream_time_before(codes, ts, self.field_ts[f])
        self.counts["stale"] += int(stale.sum())
        live = np.flatnonzero(~stale)
        codes, ts, values = codes[live], ts[live], values[live]
        # the vector each live event sees: the held values, with its own field replaced
        vectors = self.field_value[:, codes].T.copy()
        vectors[:, f] = values
        known = self.field_ts[:, codes].T != NO_STREAM_TIME
        known[:, f] = True
        edges = self.field_edges[:, codes].T.copy()
        if versions is not None:
            edges[:, FEATURES.index(field)] = versions[live]
        # the new held values: each client's last live event (its latest event time)
        last = len(codes) - 1 - np.unique(codes[::-1], return_index=True)[1]
        self.field_ts[f, codes[last]] = ts[last]
        self.field_value[f, codes[last]] = values[last]
        if versions is not None:
            self.field_edges[FEATURES.index(field), codes[last]] = versions[live][last]
        complete = known.all(axis=1)
        self.counts["incomplete"] += int((~complete).sum())
        if complete.any():
            emission.records.extend(self._predictions(
                field, codes[complete], ts[complete], vectors[complete], edges[complete]))
        return emission

    def _predictions(self, trigger: str, codes: np.ndarray, ts: np.ndarray,
                     vectors: np.ndarray, edges: np.ndarray) -> list[OutputRecord]:
        model = self.config.model
        probability = predict_many(model, vectors)
        alert = probability >= self.config.threshold
        names = self.clients.names
        records = []
        for i in range(len(codes)):
            client = names[int(codes[i])]
            value = {
                "v": SENSOR_SCHEMA_VERSION, "client": client, "timestamp_ms": int(ts[i]),
                "trigger": trigger, "vector": vectors[i].tolist(),
                "probability": float(probability[i]), "alert": bool(alert[i]),
                "threshold": self.config.threshold, "model_version": model.version,
                "edges_version": self._edges_label(edges[i]),
            }
            records.append(OutputRecord(self.config.output_topic, client, orjson.dumps(value),
                                        client))
        self.counts["predictions"] += len(records)
        return records

    def _edges_label(self, codes: np.ndarray) -> str:
        """One version when FA, FI, FD agree (the normal case), else `FA=a,FI=b,FD=c`."""
        versions = [self.edges_versions[int(c)] for c in codes]
        if len(set(versions)) == 1:
            return versions[0]
        return ",".join(f"{n}={v}" for n, v in zip(FEATURES, versions, strict=True))

    # --- offsets and checkpoints -----------------------------------------------------------
    def commit_offset(self, topic: str) -> int | None:
        return self.position.get(topic)

    def snapshot(self) -> Snapshot:
        topics = set(self.position) | set(self.replay_until)
        return {
            "version": SNAPSHOT_VERSION,
            "next_offsets": {t: max(self.position.get(t, 0), self.replay_until.get(t, 0))
                             for t in sorted(topics)},
            "clients": self.clients.names,
            "field_ts": self.field_ts.tolist(),
            "field_value": self.field_value.tolist(),
            "edges_versions": self.edges_versions,
            "field_edges": self.field_edges.tolist(),
        }

    def restore(self, snapshot: Snapshot) -> None:
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported sensor join snapshot: {snapshot.get('version')}")
        for name in snapshot["clients"]:
            self.clients.code(name)
        n = len(self.clients.names)
        self.field_ts = np.asarray(snapshot["field_ts"], dtype=np.int64).reshape(-1, n)
        self.field_value = np.asarray(snapshot["field_value"], dtype=np.int64).reshape(-1, n)
        self.edges_versions = list(snapshot["edges_versions"])
        self.field_edges = np.asarray(snapshot["field_edges"], dtype=np.int64).reshape(-1, n)
        self.replay_until = {t: int(o) for t, o in snapshot["next_offsets"].items()}

"""The sensors pipeline in memory: the five topics of one partition as logs, the real window and
join operators consuming them in whatever polls a test chooses, and crashes of either processor
with the processor's checkpoint protocol (snapshot, then commit; outputs after the last
checkpoint may be lost, a suffix of each output topic).

Used by the property test of the exact join (`tests/unit/test_sensors_exact_join.py`) and the
training/serving test; the integration tests run the same operators on a real broker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa

from features.event_time import DEFAULT_MAX_EVENT_TIME_SKEW_MS
from features.sensors.binning import DEFAULT_EDGES, BinEdges
from features.sensors.model import AlertModel
from features.sensors.schemas import FEATURES, SENSORS
from features.sensors.window_math import DEFAULT_MAX_LATENESS_MS, sensor_window
from streaming.pipelines.sensors import reading_message
from streaming.processors.sensor_join import SensorJoinConfig, SensorJoinOperator
from streaming.processors.sensor_windows import SensorWindowConfig, SensorWindowOperator
from streaming.runtime.operator import PartitionOperator, Snapshot
from streaming.runtime.records import DeadLetter, Emission, InputBatch

WINDOW_INPUTS = ("SZ",)
JOIN_INPUTS = ("SX", "SY", *FEATURES)
PARTITION = 0


@dataclass
class _Processor:
    """One processor's consumer state: its operator, next offsets, and the last checkpoint
    (snapshot, committed offsets, output lengths at that moment)."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    operator: PartitionOperator
    position: dict[str, int] = field(default_factory=dict)
    consumed: dict[str, int] = field(default_factory=dict)  # the furthest position ever
    snapshot: Snapshot | None = None
    committed: dict[str, int] = field(default_factory=dict)
    previous_committed: dict[str, int] = field(default_factory=dict)
    outputs_at_checkpoint: dict[str, int] = field(default_factory=dict)


class SensorStreams:
    """Topic logs (values, in offset order; predictions as (key, value)) and two processors."""

    def __init__(self, model: AlertModel, grace_ms: int, edges: BinEdges = DEFAULT_EDGES,
                 threshold: float = 0.5, prune_every_poll: bool = False,
                 max_lateness_ms: int = DEFAULT_MAX_LATENESS_MS) -> None:
        self.model, self.grace_ms, self.edges, self.threshold = model, grace_ms, edges, threshold
        self.max_lateness_ms = max_lateness_ms
        # the messages here carry no Kafka timestamps (the skew rule never applies); a small
        # max lateness needs a smaller skew limit all the same (`check_max_lateness`)
        self.max_event_time_skew_ms = min(DEFAULT_MAX_EVENT_TIME_SKEW_MS, max_lateness_ms - 1)
        # drop what the operators no longer need after every poll, not only at checkpoints
        self.prune_every_poll = prune_every_poll
        self.logs: dict[str, list[bytes]] = {t: [] for t in (*SENSORS, *FEATURES)}
        self.predictions: list[tuple[str, bytes]] = []
        self.dead_letters: list[DeadLetter] = []
        self.windows = _Processor(WINDOW_INPUTS, FEATURES, self._window_operator())
        self.join = _Processor(JOIN_INPUTS, ("predictions",), self._join_operator())
        self.crashes = 0
        self.hand_overs = 0

    # --- operators -----------------------------------------------------------------------------
    def _window_operator(self) -> SensorWindowOperator:
        config = SensorWindowConfig(sensor_window(self.grace_ms, self.max_lateness_ms),
                                    self.edges, {f: f for f in FEATURES},
                                    self.max_event_time_skew_ms)
        return SensorWindowOperator(config, PARTITION)

    def _join_operator(self) -> SensorJoinOperator:
        config = SensorJoinConfig({t: t for t in JOIN_INPUTS}, "predictions", self.model,
                                  self.threshold, self.grace_ms, self.max_event_time_skew_ms,
                                  self.max_lateness_ms)
        return SensorJoinOperator(config, PARTITION)

    # --- producing -----------------------------------------------------------------------------
    def publish(self, sensor: str, client: str, timestamp_ms: int, value: float) -> None:
        self.logs[sensor].append(reading_message(client, timestamp_ms, value, sensor))

    def publish_table(self, events: pa.Table) -> None:
        """Every row of a table of readings, in row order (columns sensor, client,
        timestamp_ms, value)."""
        for sensor, client, ts, value in zip(*(events[c].to_pylist() for c in (
                "sensor", "client", "timestamp_ms", "value")), strict=True):
            self.publish(sensor, client, ts, value)

    # --- consuming -----------------------------------------------------------------------------
    def pending(self, which: str) -> dict[str, int]:
        """Messages not yet consumed, per input topic of processor `which` (windows, join)."""
        p = self._processor(which)
        return {t: self._length(t) - p.position.get(t, 0) for t in p.inputs}

    def poll(self, which: str, counts: dict[str, int]) -> int:
        """One poll of processor `which`: up to `counts[topic]` messages of each input topic,
        all handed to the operator class's `process_many` at once. Returns messages taken."""
        p = self._processor(which)
        work: list[tuple[PartitionOperator, InputBatch]] = []
        for topic in p.inputs:
            first = p.position.get(topic, 0)
            values = self._values(topic)[first:first + max(counts.get(topic, 0), 0)]
            if not values:
                continue
            p.position[topic] = first + len(values)
            p.consumed[topic] = max(p.consumed.get(topic, 0), p.position[topic])
            work.append((p.operator, InputBatch(
                topic, PARTITION, np.arange(first, first + len(values), dtype=np.int64),
                [_client_key(v) for v in values], list[bytes | None](values))))
        if work:
            self._take(type(p.operator).process_many(work, 0))
            if self.prune_every_poll:
                p.operator.group.prune()  # type: ignore[attr-defined]
        if not any(self.pending(which).values()):
            # the processor's tick: every input topic consumed to its end (the join answers
            # what it held back for features that have not come)
            self._take(p.operator.tick(0))
        return sum(len(b) for _, b in work)

    def _take(self, emission: Emission) -> None:
        self.dead_letters += emission.dead_letters
        for batch in emission.batches:
            if batch.topic == "predictions":
                self.predictions += list(zip(batch.keys, batch.values, strict=True))
            else:
                self.logs[batch.topic] += batch.values
        for record in emission.records:
            if record.topic == "predictions":
                self.predictions.append((record.key, record.value))
            else:
                self.logs[record.topic].append(record.value)

    def drain(self, per_poll: int = 10**9) -> None:
        """Windows, then the join, in polls of up to `per_poll` per topic, until nothing is
        pending."""
        while True:
            taken = 0
            for which in ("windows", "join"):
                while any(self.pending(which).values()):
                    taken += self.poll(which, dict.fromkeys(self._processor(which).inputs,
                                                            per_poll))
            if not taken:
                return

    # --- checkpoints and crashes ---------------------------------------------------------------
    def checkpoint(self, which: str) -> None:
        """What the processor does: its outputs so far are acknowledged, the snapshot is
        written, then offsets are committed."""
        p = self._processor(which)
        p.outputs_at_checkpoint = {t: self._length(t) for t in p.outputs}
        p.snapshot = orjson.loads(orjson.dumps(p.operator.snapshot()))  # through JSON
        p.previous_committed = dict(p.committed)
        p.committed = {t: o for t in p.inputs
                       if (o := p.operator.commit_offset(t)) is not None}

    def crash(self, which: str, kept: Sequence[float] = (), before_commit: bool = False
              ) -> None:
        """kill -9 of processor `which`: of what each output topic got since its last
        checkpoint, the fraction `kept[i]` (default 0) was delivered, the rest is lost; a new
        operator is restored from the last checkpoint and resumes at the committed offsets (or,
        `before_commit`, at the commit before it: killed between snapshot and commit)."""
        p = self._processor(which)
        for i, topic in enumerate(p.outputs):
            start = p.outputs_at_checkpoint.get(topic, 0)
            fraction = kept[i] if i < len(kept) else 0.0
            keep = start + int((self._length(topic) - start) * fraction)
            # what the join ever consumed was delivered
            keep = max(keep, self.join.consumed.get(topic, 0) if which == "windows" else 0)
            if topic == "predictions":
                del self.predictions[keep:]
            else:
                del self.logs[topic][keep:]
        fresh = self._window_operator() if which == "windows" else self._join_operator()
        if p.snapshot is not None:
            fresh.restore(p.snapshot)
        p.operator = fresh
        p.position = dict(p.previous_committed if before_commit else p.committed)
        self.crashes += 1

    def hand_over(self, which: str, resume_at_commit: bool = False) -> None:
        """A clean hand-over of processor `which`'s partition (a rebalance, a SIGTERM): the
        operator is told (`hand_over`), checkpointed, and a new one restored from that
        checkpoint resumes where it says (`resume_offset`), or, `resume_at_commit`, at the
        committed offsets (a consumer that does not seek)."""
        p = self._processor(which)
        p.operator.hand_over()
        self.checkpoint(which)
        fresh = self._window_operator() if which == "windows" else self._join_operator()
        assert p.snapshot is not None
        fresh.restore(p.snapshot)
        p.operator = fresh
        p.position = dict(p.committed)
        for topic in p.inputs:
            offset = fresh.resume_offset(topic)
            if offset is not None and not resume_at_commit:
                p.position[topic] = offset
        self.hand_overs += 1

    # --- results -------------------------------------------------------------------------------
    def final_predictions(self) -> dict[str, dict[str, object]]:
        """Per prediction key, its last value."""
        return {key: orjson.loads(value) for key, value in self.predictions}

    def final_prediction_bytes(self) -> dict[str, bytes]:
        return dict(self.predictions)

    def _processor(self, which: str) -> _Processor:
        return self.windows if which == "windows" else self.join

    def _values(self, topic: str) -> list[bytes]:
        return self.logs[topic]

    def _length(self, topic: str) -> int:
        return len(self.predictions) if topic == "predictions" else len(self.logs[topic])


def _client_key(value: bytes | None) -> bytes | None:
    """The Kafka key a producer gives a record: its client (the processors dead-letter a record
    keyed otherwise); None for a value that names no client."""
    try:
        client = orjson.loads(value or b"").get("client")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return client.encode() if isinstance(client, str) else None

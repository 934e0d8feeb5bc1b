"""A member that lost its group membership writes no checkpoint for the partitions it held.

A processor whose loop stalls past `max.poll.interval.ms` (a slow store, a long batch) is
dropped from its group, and another member gets its partitions, restores their checkpoints and
goes on. The stalled one learns of the loss only at its next poll; until then it still holds a
checkpoint taken before the stall. Written late, that snapshot would overwrite the new owner's
newer one on the compacted checkpoint topic, and whoever restores next would pair older state
with the new owner's newer committed offsets. Before the fix it was written (and its close
raised `_DESTROY` from the commit in the revocation callback)."""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import pytest
from confluent_kafka import Producer

from streaming.runtime.checkpoint import CheckpointStore, checkpoint_key
from streaming.runtime.operator import PartitionOperator, Snapshot
from streaming.runtime.processor import ProcessorConfig, StreamProcessor
from streaming.runtime.records import Emission, InputBatch, OutputRecord
from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import TopicSpec, ensure_topics

pytestmark = pytest.mark.integration

MAX_POLL_INTERVAL_MS = 7_000


class _Counter(PartitionOperator):
    """Counts messages; its snapshot names the member that took it. `stall_s`: the next batch
    takes that long (once)."""

    def __init__(self, owner: str, output: str) -> None:
        self.owner, self.output = owner, output
        self.position: int | None = None
        self.count = 0
        self.stall_s = 0.0

    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        if self.stall_s:
            time.sleep(self.stall_s)
            self.stall_s = 0.0
        self.position = int(batch.offsets[-1]) + 1
        self.count += len(batch)
        return Emission(records=[OutputRecord(self.output, self.owner, orjson.dumps(self.count),
                                              self.owner)])

    def commit_offset(self, topic: str) -> int | None:
        return self.position

    def snapshot(self) -> Snapshot:
        return {"owner": self.owner, "count": self.count}

    def restore(self, snapshot: Snapshot) -> None:
        self.count = int(snapshot["count"])


def test_a_member_stalled_out_of_its_group_writes_no_snapshot_over_the_new_owners(
        kafka_settings: KafkaSettings) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    source, output, checkpoints = prefix + "in", prefix + "out", prefix + "checkpoints"
    ensure_topics(kafka_settings, [
        TopicSpec(source, 1), TopicSpec(output, 1), TopicSpec(prefix + "dead", 1),
        TopicSpec(checkpoints, 1, cleanup_policy="compact")], TopicSettings())
    producer = Producer(kafka_settings.client_config())

    def feed(count: int) -> None:
        for _ in range(count):
            producer.produce(source, key="k", value=b"{}")
        assert producer.flush(30) == 0

    operators: dict[str, _Counter] = {}

    def member(owner: str) -> StreamProcessor:
        def factory(partition: int) -> _Counter:
            operators[owner] = _Counter(owner, output)
            return operators[owner]
        return StreamProcessor(kafka_settings, ProcessorConfig(
            prefix + "group", (source,), dead_letter_topic=prefix + "dead",
            checkpoint_topic=checkpoints,
            consumer_overrides={"max.poll.interval.ms": MAX_POLL_INTERVAL_MS}), factory)

    stalled = member("A")
    stalled.start()
    feed(50)
    deadline = time.monotonic() + 60
    while stalled.stats.consumed < 50:
        assert time.monotonic() < deadline, "the first member never consumed the stream"
        stalled.step()
    stalled.checkpoint()  # its state at offset 50: snapshot written, then offsets committed

    feed(10)
    operators["A"].stall_s = MAX_POLL_INTERVAL_MS / 1000 + 6
    successor = member("B")
    done = threading.Event()

    def run_successor() -> None:
        successor.start()
        while not done.is_set():
            successor.step()
        successor.close()

    thread = threading.Thread(target=run_successor)
    thread.start()
    try:
        stalled.step()  # the stall: the group drops A and gives its partition to B meanwhile
        assert operators["B"].count == 60, "the successor did not take over during the stall"
        time.sleep(2)  # B checkpoints
        stalled.checkpoint()  # before A polls again: it still holds the partition's operator
        # B, idle, writes nothing more until it stops: the latest snapshot must be its own
        key = checkpoint_key(prefix + "group", (source,), 0)
        latest = CheckpointStore(kafka_settings, producer, checkpoints).load({key})[key]
        assert latest == {"owner": "B", "count": 60}
        stalled.close()  # raised before the fix: a commit from the revocation callback
    finally:
        done.set()
        thread.join(60)

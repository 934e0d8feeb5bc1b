"""A failed delivery of any output message stops the processor before its checkpoint passes
that message, with idempotence on or off (issue 10, "Deliveries"), on Apache Kafka.

The broker refuses a record batch larger than the topic's `max.message.bytes`. The operator
below echoes each input as an incompressible output of the size the input names, all to one
partition: 20 outputs of 60 kB in one emission. librdkafka packs them into produce requests of at
most `batch.size` (1 MB): the first request (~16 outputs, ~960 kB) is over the topic's 600 kB
limit and refused; the last (~4 outputs, ~240 kB) is accepted. A checkpoint that waited only for
the last message of the partition would commit past 16 lost outputs.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from streaming.runtime.operator import PartitionOperator, Snapshot
from streaming.runtime.processor import ProcessorConfig, StreamProcessor
from streaming.runtime.records import Emission, InputBatch, OutputRecord
from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import TopicSpec, ensure_topics
from tests.support.history_checker import HistoryCheck
from tests.support.reliability_report import record_faults

pytestmark = [pytest.mark.integration]

OUTPUT_LIMIT = 600_000  # the output topic's max.message.bytes
OUTPUTS, OUTPUT_BYTES = 20, 60_000


class _Echo(PartitionOperator):
    """Input value = a byte count; output = that many seeded random bytes (incompressible)."""

    def __init__(self, output_topic: str) -> None:
        self.output_topic = output_topic
        self.next_offset: int | None = None

    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        records = []
        for offset, value in zip(batch.offsets.tolist(), batch.values, strict=True):
            size = int(value or b"0")
            payload = np.random.default_rng(offset).bytes(size)
            records.append(OutputRecord(self.output_topic, f"k{offset}", payload, "one-key"))
        self.next_offset = int(batch.offsets[-1]) + 1
        return Emission(records=records)

    def commit_offset(self, topic: str) -> int | None:
        return self.next_offset

    def snapshot(self) -> Snapshot:
        return {"next_offset": self.next_offset}

    def restore(self, snapshot: Snapshot) -> None:
        self.next_offset = snapshot["next_offset"]


def _committed(kafka: KafkaSettings, group: str, topic: str) -> int:
    consumer = Consumer({**kafka.client_config(), "group.id": group})
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "not-idempotent"])
def test_a_refused_output_stops_the_processor_before_any_commit(
    kafka_settings: KafkaSettings, unique_topic_prefix: str, idempotent: bool
) -> None:
    kafka = kafka_settings.model_copy(update={"enable_idempotence": idempotent})
    names = {n: f"{unique_topic_prefix}{n}" for n in ("in", "out", "dlq", "checkpoints")}
    ensure_topics(kafka, [
        TopicSpec(names["in"], 1),
        TopicSpec(names["out"], 1, extra={"max.message.bytes": str(OUTPUT_LIMIT)}),
        TopicSpec(names["dlq"], 1),
        TopicSpec(names["checkpoints"], 1, cleanup_policy="compact", retention_ms=-1),
    ], TopicSettings())
    producer = Producer(kafka.client_config())
    for _ in range(OUTPUTS):
        producer.produce(names["in"], value=str(OUTPUT_BYTES).encode())
    assert producer.flush(30) == 0

    group = f"{unique_topic_prefix}echo"
    processor = StreamProcessor(
        kafka,
        ProcessorConfig(name=group, input_topics=(names["in"],), checkpoint_interval_s=0.0,
                        dead_letter_topic=names["dlq"], checkpoint_topic=names["checkpoints"]),
        lambda _partition: _Echo(names["out"]),
    )
    processor.start()
    consumed = 0
    deadline = time.monotonic() + 60
    with pytest.raises(KafkaException) as stopped:
        while time.monotonic() < deadline:
            consumed += processor.step()
    assert consumed == OUTPUTS  # it read everything, then stopped on the refused deliveries
    assert "MSG_SIZE_TOO_LARGE" in str(stopped.value) or "too large" in str(stopped.value).lower()
    # nothing was committed past the lost outputs: a restart replays every input
    committed = _committed(kafka, group, names["in"])
    record_faults(f"output deliveries refused ({'idempotent' if idempotent else 'plain'})",
                  {"refused delivery": 1},
                  HistoryCheck(checked=consumed, lost=max(committed, 0), unexpected=0,
                               different=0, identical_duplicates=0))
    assert committed < 0  # OFFSET_INVALID: no commit at all

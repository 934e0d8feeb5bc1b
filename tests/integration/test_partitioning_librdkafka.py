"""Braid's partitioner against librdkafka's, through a real produce: records produced with a
key and no partition by confluent-kafka configured with `partitioner=murmur2_random` (Kafka's
Java default, which librdkafka implements) land on exactly the partition `partition_for` gives,
for pairs, clients, non-ASCII and empty keys and a few hundred random ones. So a producer outside
Braid configured that way writes an entity's records where Braid's processors read them."""

from __future__ import annotations

import random
import string
import uuid

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streaming.partitioning import partition_for
from streaming.settings import KafkaSettings

pytestmark = pytest.mark.integration

PARTITIONS = 13


def test_librdkafkas_murmur2_partitioner_puts_every_key_where_braid_does(
        kafka_settings: KafkaSettings) -> None:
    topic = f"partitioning-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(dict(kafka_settings.client_config()))
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        future.result(30)
    rng = random.Random(25)
    keys = ["XBT/USD", "ETH/USD", "USDT/USD", "c000042", "skab-valve1-3", "É/€", "",
            *("".join(rng.choices(string.printable, k=rng.randint(1, 40))) for _ in range(300))]
    landed: dict[str, int] = {}
    errors: list[str] = []

    def report(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(str(error))
        else:
            key, partition = message.key(), message.partition()
            assert partition is not None
            landed[(key or b"").decode("utf-8")] = partition

    producer = Producer({**kafka_settings.client_config(), "partitioner": "murmur2_random"})
    for key in keys:
        producer.produce(topic, key=key.encode("utf-8"), value=b"x", on_delivery=report)
    assert producer.flush(30) == 0 and not errors, errors
    assert len(landed) == len(set(keys))
    assert {k: landed[k] for k in keys} == {k: partition_for(k, PARTITIONS) for k in keys}
    assert len(set(landed.values())) == PARTITIONS  # the keys reach every partition

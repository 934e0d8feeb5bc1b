"""librdkafka clients configured from `KafkaSettings`, with Braid's defaults."""

from __future__ import annotations

from confluent_kafka import Consumer, Message, Producer

from streaming.settings import KafkaSettings

ClientConfig = dict[str, object]


def producer_config(kafka: KafkaSettings, **overrides: object) -> ClientConfig:
    """Braid's producer: idempotent, so retries never duplicate or reorder a partition."""
    conf: ClientConfig = {
        **kafka.client_config(),
        "enable.idempotence": kafka.enable_idempotence,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000,
        "reconnect.backoff.max.ms": 1_000,  # back within a second of a broker restart
    }
    if not kafka.enable_idempotence:
        conf["max.in.flight.requests.per.connection"] = 1  # retries keep the order
    conf.update(kafka.extra)  # the operator's KAFKA_EXTRA wins over Braid's defaults
    conf.update(overrides)
    return conf


def make_producer(kafka: KafkaSettings, **overrides: object) -> Producer:
    return Producer(producer_config(kafka, **overrides))


def consumer_config(kafka: KafkaSettings, group_id: str, **overrides: object) -> ClientConfig:
    """A consumer that never commits by itself; the processor commits what is safe to skip."""
    conf: ClientConfig = {
        **kafka.client_config(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": kafka.session_timeout_ms,
        "heartbeat.interval.ms": max(500, kafka.session_timeout_ms // 3),
        # co-partitioned input topics must land on the same instance: range does that
        "partition.assignment.strategy": "range",
        # see KafkaSettings.fetch_wait_max_ms
        "fetch.wait.max.ms": kafka.fetch_wait_max_ms,
        "enable.partition.eof": True,  # the processor tells idleness from lag with it
        "reconnect.backoff.max.ms": 1_000,
        "queued.min.messages": 200_000,
    }
    conf.update(kafka.extra)  # the operator's KAFKA_EXTRA wins over Braid's defaults
    conf.update(overrides)
    return conf


def make_consumer(kafka: KafkaSettings, group_id: str, **overrides: object) -> Consumer:
    return Consumer(consumer_config(kafka, group_id, **overrides))


def consume_available(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    """What is already fetched, up to `max_messages`; if nothing, wait for the first message (up
    to `timeout_s`) and take what arrived with it. `consume(n, timeout)` alone waits until n
    messages came or the timeout passed, which delays a trickle of live messages by the timeout.
    """
    messages = consumer.consume(max_messages, 0)
    if messages:
        return messages
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, 0)]

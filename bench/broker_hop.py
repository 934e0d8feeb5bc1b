"""One bare produce -> consume hop through a broker: the floor under any end-to-end latency the
benchmarks measure (`bench_sensors.py`, `bench_fetch_wait.py`)."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
from confluent_kafka import Consumer

from streaming.runtime.clients import consume_available, make_producer
from streaming.settings import KafkaSettings


def hop_latencies(kafka: KafkaSettings, topic: str, *, partitions: int, messages: int,
                  fetch_wait_ms: int, warm_up: int = 0,
                  producer_conf: dict[str, str | int | bool] | None = None) -> np.ndarray:
    """Produce -> consume latencies (ms) of `messages` messages at ~1,000/s, round robin over
    the topic's `partitions`, read by a consumer of its own at `fetch_wait_ms`.

    Braid's producer with `linger.ms` 1 (and `producer_conf`). Not counted: one message
    flushed first (on a fresh Apache Kafka the idempotent producer's id comes from a
    transaction coordinator still loading its log, which took seconds), then `warm_up`
    messages (every partition fetched once). Only this call's messages are counted (a mark
    in the value), so a topic can serve several calls."""
    consumer = Consumer({**kafka.client_config(), "group.id": f"hop-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "latest", "enable.auto.commit": False,
                         "fetch.wait.max.ms": fetch_wait_ms,
                         "session.timeout.ms": kafka.session_timeout_ms})
    consumer.subscribe([topic])
    mark = f"hop-{uuid.uuid4().hex[:6]}:".encode()
    latencies: list[float] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for msg in consume_available(consumer, 1_000, 0.1):  # not a fixed wait per call
                value = msg.value()
                if msg.error() is None and value is not None and value.startswith(mark):
                    latencies.append(time.time() * 1000 - float(value[len(mark):]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(6)  # group join
    producer = make_producer(kafka, **{"linger.ms": 1, **(producer_conf or {})})
    producer.produce(topic, value=b"first", partition=0)
    producer.flush(60)
    for i in range(warm_up + messages):
        value = (mark + str(time.time() * 1000).encode() if i >= warm_up else b"warm-up")
        producer.produce(topic, value=value, partition=i % partitions)
        producer.poll(0)
        time.sleep(0.001)
    producer.flush(30)
    time.sleep(2)
    stop.set()
    reader.join(10)
    consumer.close()
    return np.array(latencies)

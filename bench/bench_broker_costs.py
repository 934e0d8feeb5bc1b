"""What the local broker (in-memory Tansu) costs in CPU per produce and per fetch pattern.

    .venv/bin/python bench/bench_broker_costs.py [--seconds 5]

Prints the broker process's CPU share (user + system time from /proc/<pid>/stat) while:
1. a producer sends ~N msg/s spread over P partitions with a given `linger.ms` (no consumer);
2. a consumer with nothing to read sits on T topics x 100 partitions at a given
   `fetch.wait.max.ms` (Tansu answers each empty fetch after the wait, so the fetch rate is
   about 1000 / wait per consumer).
These are the figures behind the sensors latency discussion in bench/README.md. Each case gets
a fresh broker (started and stopped by PID through `infra.stack`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infra import stack  # noqa: E402
from infra.settings import StackSettings  # noqa: E402
from infra.testing import free_port  # noqa: E402
from streaming.runtime.clients import make_consumer, make_producer  # noqa: E402
from streaming.settings import KafkaSettings, TopicSettings  # noqa: E402
from streaming.topics import TopicSpec, ensure_topics  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _broker() -> Iterator[tuple[KafkaSettings, int]]:
    settings = StackSettings(state_dir=Path(tempfile.mkdtemp(prefix="braid-bench-")),
                             broker_port=free_port(), services=["broker"], durable=False)
    stack.up(settings, create_topics=False)
    try:
        pid = json.loads((settings.run_dir / "broker.pid").read_text())["pid"]
        yield settings.local_kafka_settings(), int(pid)
    finally:
        stack.down(settings)


def produce_case(partitions: int, rate: int, linger_ms: int, seconds: float) -> float:
    with _broker() as (kafka, pid):
        topic = f"p{uuid.uuid4().hex[:6]}"
        ensure_topics(kafka, [TopicSpec(topic, partitions)], TopicSettings())
        producer = make_producer(kafka, **{"linger.ms": linger_ms})
        per_tick, ticks = max(rate // 100, 1), int(seconds * 100)
        before, started, n = _cpu_seconds(pid), time.monotonic(), 0
        for step in range(ticks):
            delay = started + step * 0.01 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for _ in range(per_tick):
                producer.produce(topic, value=b"x" * 100, partition=n % partitions)
                n += 1
            producer.poll(0)
        producer.flush(30)
        share = (_cpu_seconds(pid) - before) / (time.monotonic() - started)
        del producer  # before the broker stops
        return share


def idle_fetch_case(topics: int, wait_ms: int, seconds: float) -> float:
    with _broker() as (kafka, pid):
        names = [f"f{uuid.uuid4().hex[:6]}" for _ in range(topics)]
        ensure_topics(kafka, [TopicSpec(name, 100) for name in names], TopicSettings())
        stop = threading.Event()

        def consume() -> None:
            consumer = make_consumer(kafka, f"{names[0]}-idle", **{"fetch.wait.max.ms": wait_ms})
            consumer.subscribe(names)
            while not stop.is_set():
                consumer.consume(1000, 0.05)
            consumer.close()

        thread = threading.Thread(target=consume)
        thread.start()
        time.sleep(6)  # group join
        before = _cpu_seconds(pid)
        time.sleep(seconds)
        share = (_cpu_seconds(pid) - before) / seconds
        stop.set()
        thread.join()
        return share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per case")
    args = parser.parse_args()
    for partitions, rate, linger in ((1, 10_000, 5), (100, 1_000, 5), (100, 10_000, 5),
                                     (100, 10_000, 50), (100, 10_000, 200)):
        share = produce_case(partitions, rate, linger, args.seconds)
        print(f"produce {rate:,} msg/s over {partitions} partition(s), linger.ms {linger}: "
              f"broker CPU {100 * share:.0f}% of a core", flush=True)
    for topics, wait in ((1, 10), (5, 5), (5, 10), (5, 100), (5, 500)):
        share = idle_fetch_case(topics, wait, args.seconds)
        print(f"one idle consumer of {topics} x 100 partitions, fetch.wait.max.ms {wait}: "
              f"broker CPU {100 * share:.0f}% of a core", flush=True)


if __name__ == "__main__":
    main()

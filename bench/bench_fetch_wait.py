"""What `fetch.wait.max.ms` costs and buys on Apache Kafka; prints a table.

    .venv/bin/python bench/bench_fetch_wait.py [--waits 500,100,50,20,10] [--idle-s 10]

`fetch.wait.max.ms` is how long the broker may hold a fetch that finds no data
(`KafkaSettings.fetch_wait_max_ms`, `KAFKA_FETCH_WAIT_MAX_MS`). For each value:

1. **Idle cost**: the sensors pipeline's two consumers, idle (the window processor's, on one
   100-partition topic; the join's, on five), subscribed and polling as the runtime polls
   (`consume_available`, 100 ms), for `--idle-s` seconds with no message produced. Figures: the
   broker's CPU and the consumers' own (librdkafka's threads), in % of one core, and the fetch
   requests the broker answered per second (its `FetchConsumer` request count, JMX-free: from
   the difference of the consumers' librdkafka statistics, `tx` requests to the broker).
2. **Hop latency**: one produce -> consume hop at ~1,000 messages/s over 100 partitions (round
   robin, Braid's producer with `linger.ms` 1), the consumer at this wait; p50 / p99 / max
   after a second of warm-up (not counted).

The broker's CPU with no consumer at all is printed first: the idle costs include it.

One fresh broker (`infra.stack`, state in a temporary folder) serves every value, warmed up
first with a hop and a whole round at the first value (printed, not counted: the first round on
a fresh broker had a tail whatever the value); it is stopped by PID at the end.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402

from bench.broker_hop import hop_latencies  # noqa: E402
from infra import processes, stack  # noqa: E402
from infra.testing import broker_settings  # noqa: E402
from streaming.runtime.clients import consume_available, make_consumer  # noqa: E402
from streaming.settings import KafkaSettings, TopicSettings  # noqa: E402
from streaming.topics import TopicSpec, ensure_topics  # noqa: E402

PARTITIONS = 100


@contextmanager
def fresh_broker() -> Iterator[tuple[KafkaSettings, psutil.Process]]:
    """A new Apache Kafka broker on free ports and its process, stopped (by PID) afterwards."""
    settings = broker_settings(Path(tempfile.mkdtemp(prefix="braid-bench-")))
    stack.up(settings, create_topics=False)
    try:
        broker = processes.running_process(settings.run_dir, "broker")
        assert broker is not None, "the broker is not running"
        yield settings.local_kafka_settings(), broker
    finally:
        stack.down(settings)


class Requests:
    """Fetch requests the consumers sent, from librdkafka's statistics (`stats_cb`)."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}

    def callback(self, name: str) -> Callable[[str], None]:
        def on_stats(raw: str) -> None:
            stats = json.loads(raw)
            self.sent[name] = sum(b.get("req", {}).get("Fetch", 0)
                                  for b in stats["brokers"].values())
        return on_stats


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def idle_cost(kafka: KafkaSettings, broker: psutil.Process, topics: list[str], wait_ms: int,
              seconds: float) -> dict[str, float]:
    """Broker and client CPU (% of one core) and fetches/s while the two consumers idle."""
    tuned = kafka.model_copy(update={"fetch_wait_max_ms": wait_ms})
    requests = Requests()
    group = uuid.uuid4().hex[:6]
    consumers = {
        "windows": make_consumer(tuned, f"idle-{group}-windows", **{
            "stats_cb": requests.callback("windows"), "statistics.interval.ms": 1000}),
        "join": make_consumer(tuned, f"idle-{group}-join", **{
            "stats_cb": requests.callback("join"), "statistics.interval.ms": 1000}),
    }
    consumers["windows"].subscribe(topics[:1])
    consumers["join"].subscribe(topics)
    stop = threading.Event()

    def poll(consumer: Consumer) -> None:
        while not stop.is_set():
            consume_available(consumer, 10_000, 0.1)

    threads = [threading.Thread(target=poll, args=(c,), daemon=True) for c in consumers.values()]
    for t in threads:
        t.start()
    time.sleep(8)  # group joins, first fetches
    me = psutil.Process()
    before = (_cpu(broker), _cpu(me), dict(requests.sent), time.perf_counter())
    time.sleep(seconds)
    after = (_cpu(broker), _cpu(me), dict(requests.sent), time.perf_counter())
    stop.set()
    for t in threads:
        t.join(5)
    for c in consumers.values():
        c.close()
    span = after[3] - before[3]
    fetches = sum(after[2].get(k, 0) - before[2].get(k, 0) for k in after[2])
    return {"broker": 100 * (after[0] - before[0]) / span,
            "clients": 100 * (after[1] - before[1]) / span, "fetches_per_s": fetches / span}


def hop(kafka: KafkaSettings, topic: str, wait_ms: int, messages: int) -> np.ndarray:
    """Produce -> consume latencies (ms) at ~1,000 messages/s over the topic's partitions; the
    first second of messages warms the consumer up (every partition fetched once) and is not
    counted (`bench/broker_hop.py`)."""
    return hop_latencies(kafka, topic, partitions=PARTITIONS, messages=messages,
                         fetch_wait_ms=wait_ms, warm_up=1_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waits", default="500,100,500,100,50,20,10",
                        help="fetch.wait.max.ms values, comma-separated, measured in this order "
                        "(repeat values to see the noise)")
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--hop-messages", type=int, default=3_000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    with fresh_broker() as (kafka, broker):
        prefix = f"fw{uuid.uuid4().hex[:6]}."
        topics = [f"{prefix}{name}" for name in ("SZ", "SX", "SY", "FA", "FI")]
        hop_topic = f"{prefix}hop"
        ensure_topics(kafka, [TopicSpec(t, PARTITIONS) for t in [*topics, hop_topic]],
                      TopicSettings())
        hop(kafka, hop_topic, 10, 1_000)  # warm-up: the broker's JIT, producer ids
        # a whole round, not counted: the first one on a fresh broker had a tail whatever the
        # wait (p99 111-356 ms, where the same value later gave 6-17)
        waits = [int(w) for w in args.waits.split(",")]
        idle_cost(kafka, broker, topics, waits[0], 2)
        cold = hop(kafka, hop_topic, waits[0], args.hop_messages)
        print(f"warm-up round at {waits[0]} ms, not counted: hop p50 "
              f"{np.percentile(cold, 50):.1f} / p99 {np.percentile(cold, 99):.1f} / max "
              f"{cold.max():.1f} ms")
        before, began = _cpu(broker), time.perf_counter()
        time.sleep(args.idle_s)
        print(f"broker CPU with no consumer: "
              f"{100 * (_cpu(broker) - before) / (time.perf_counter() - began):.1f}% of a core")
        print(f"{'fetch.wait.max.ms':>17} | idle consumers (100 + 500 partitions): broker CPU, "
              f"consumers' CPU, fetches/s | hop over {PARTITIONS} partitions at ~1,000 msg/s: "
              f"p50 / p99 / max ms")
        for wait in waits:
            cost = idle_cost(kafka, broker, topics, wait, args.idle_s)
            lat = hop(kafka, hop_topic, wait, args.hop_messages)
            print(f"{wait:>17} | {cost['broker']:5.1f}% {cost['clients']:5.1f}% "
                  f"{cost['fetches_per_s']:7.1f} | {np.percentile(lat, 50):6.1f} / "
                  f"{np.percentile(lat, 99):6.1f} / {lat.max():6.1f} ({len(lat):,} msgs); "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()

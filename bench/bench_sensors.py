"""Benchmark of the sensors speed layer; prints its figures.

    .venv/bin/python bench/bench_sensors.py [--clients 2000] [--minutes 25] [--rate 10000]

1. **Window processor throughput**: simulated SZ readings are produced to a 100-partition SZ
   topic first; then the window processor consumes them all, once with one process and once
   with two processes sharing the partitions (one consumer group). Figures: SZ events/s per
   process (first to last consumed message) and for the whole group.
2. **Latency**: window and join processors run (one process each); SX and SY are primed for
   every client, then SZ readings stamped with the wall clock are produced at `--rate` events/s
   for `--seconds`. A consumer of predictions.sensors records, for each SZ reading, when its
   first prediction and its last (all of FA, FI, FD joined) arrive. Grace is 0 here: with a
   grace g, a reading's features wait by definition until its client's stream time passes t + g,
   so end-to-end latency is g plus the figures printed. The processors run with a 10 ms poll
   timeout and `fetch.wait.max.ms` 5 (the defaults, 100 ms and 50 ms, favour throughput).

3. **Broker floor**: one bare produce -> consume hop with the same client settings, since an SZ
   reading crosses three hops (SZ -> window processor -> FA/FI/FD -> join -> predictions). Both
   the hop and the latency run are measured twice: with the runtime's idempotent producer
   (`streaming.runtime.clients`), and, as an experiment, without idempotence (acks=all, one
   request in flight: no reordering; a retry may duplicate, which deterministic keys absorb):
   on Tansu the idempotent producer shows ~500 ms stalls at p99.

A local in-memory Tansu broker is started and stopped by the benchmark (`infra.stack`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402

from infra import stack  # noqa: E402
from infra.settings import StackSettings  # noqa: E402
from infra.testing import free_port  # noqa: E402
from streaming.partitioning import partition_for  # noqa: E402
from streaming.pipelines.sensors import (  # noqa: E402
    SensorTopics,
    join_processor,
    reading_message,
    window_processor,
)
from streaming.runtime.clients import make_producer  # noqa: E402
from streaming.settings import KafkaSettings, TopicSettings  # noqa: E402
from streaming.sources.sensors_simulator import SimulatorConfig, simulate  # noqa: E402
from streaming.topics import TopicSpec, ensure_topics  # noqa: E402

PARTITIONS = 100


def _produce(kafka: KafkaSettings, topic: str, clients: list[str], ts: list[int],
             values: list[float], sensor: str) -> None:
    producer = make_producer(kafka)
    for client, t, v in zip(clients, ts, values, strict=True):
        while True:
            try:
                producer.produce(topic, key=client, value=reading_message(client, t, v, sensor),
                                 partition=partition_for(client, PARTITIONS))
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)


# --- worker processes ---------------------------------------------------------------------
def worker_windows(args: argparse.Namespace) -> None:
    """Consume SZ until `--expect` readings were consumed by the group or idle; print stats."""
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap)
    topics = SensorTopics.prefixed(args.prefix)
    proc = window_processor(kafka, grace_ms=args.grace_ms, topics=topics, group=args.group,
                            idle_timeout_ms=60_000, batch_size=args.batch_size)
    proc.start()
    first = last = None
    busy = 0.0  # seconds spent in steps that consumed something (excludes rebalance waits)
    idle_since = time.monotonic()
    while True:
        t0 = time.perf_counter()
        n = proc.step()
        now = time.time()
        if n:
            busy += time.perf_counter() - t0
            first = first or now
            last = now
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > (args.idle_s if first is not None else 60):
            break
    proc.close()
    print(json.dumps({"consumed": proc.stats.consumed, "produced": proc.stats.produced,
                      "first": first, "last": last, "busy": busy,
                      "batches": proc.stats.batches}))


NO_IDEMPOTENCE: dict[str, str | int | bool] = {
    "enable.idempotence": False, "acks": "all", "max.in.flight.requests.per.connection": 1}


def worker_processor(args: argparse.Namespace) -> None:
    """Run the window or join processor until SIGTERM (latency benchmark)."""
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap)
    if args.no_idempotence:  # bench experiment: the runtime's producer without idempotence
        import streaming.runtime.processor as processor_module

        def producer(kafka: KafkaSettings, **overrides: object) -> Producer:
            return make_producer(kafka, **{**NO_IDEMPOTENCE, **overrides})

        processor_module.make_producer = producer
    topics = SensorTopics.prefixed(args.prefix)
    low_latency: dict[str, str | int | bool] = {"fetch.wait.max.ms": 5}
    if args.kind == "windows":
        window_processor(kafka, grace_ms=0, topics=topics, group=args.group,
                         idle_timeout_ms=60_000, batch_size=args.batch_size,
                         poll_timeout_s=0.01, consumer_overrides=low_latency).run()
    else:
        join_processor(kafka, topics=topics, group=args.group, batch_size=args.batch_size,
                       poll_timeout_s=0.01, consumer_overrides=low_latency).run()


def _spawn(*argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "BRAID_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)


# --- benchmarks ---------------------------------------------------------------------------
def bench_throughput(kafka: KafkaSettings, args: argparse.Namespace) -> None:
    events = simulate(SimulatorConfig(clients=args.clients, duration_ms=args.minutes * 60_000,
                                      seed=1))
    sz = events.filter(pc.equal(events["sensor"], "SZ"))
    n = sz.num_rows
    prefix = f"b{uuid.uuid4().hex[:6]}."
    topics = SensorTopics.prefixed(prefix)
    ensure_topics(kafka, topics.specs(PARTITIONS), TopicSettings())
    started = time.perf_counter()
    _produce(kafka, topics.SZ, sz["client"].to_pylist(), sz["timestamp_ms"].to_pylist(),
             sz["value"].to_pylist(), "SZ")
    print(f"produced {n:,} SZ readings of {args.clients:,} clients "
          f"({args.minutes} min of event time, ~{args.minutes * 12} readings per client) "
          f"to {PARTITIONS} partitions in {time.perf_counter() - started:.1f} s")
    for processes in (1, 2):
        group = f"{prefix}windows-{processes}"
        workers = [_spawn("_windows", "--bootstrap", kafka.bootstrap_servers, "--prefix", prefix,
                          "--group", group, "--grace-ms", "5000", "--batch-size",
                          str(args.batch_size), "--idle-s", "4") for _ in range(processes)]
        stats = [json.loads(w.communicate(timeout=900)[0].strip().splitlines()[-1])
                 for w in workers]
        total = sum(s["consumed"] for s in stats)
        span = max(s["last"] for s in stats) - min(s["first"] for s in stats)
        per = [s["consumed"] / max(s["last"] - s["first"], 1e-9) for s in stats]
        busy = [s["consumed"] / max(s["busy"], 1e-9) for s in stats]
        print(f"window processor, {processes} process(es): consumed {total:,} "
              f"(duplicates from rebalances: {total - n:,}) in {span:.2f} s wall = "
              f"{total / span:,.0f} events/s for the group; per process, first to last "
              f"message: {', '.join(f'{p:,.0f}' for p in per)} events/s; per process, while "
              f"busy: {', '.join(f'{p:,.0f}' for p in busy)} events/s; feature rows out: "
              f"{sum(s['produced'] for s in stats):,}")


def bench_latency(kafka: KafkaSettings, args: argparse.Namespace,
                  no_idempotence: bool = False) -> None:
    prefix = f"l{uuid.uuid4().hex[:6]}."
    topics = SensorTopics.prefixed(prefix)
    ensure_topics(kafka, topics.specs(PARTITIONS), TopicSettings())
    clients = [f"c{i:06d}" for i in range(args.clients)]
    now = int(time.time() * 1000) - 60_000
    rng = np.random.default_rng(2)
    for sensor in ("SX", "SY"):
        _produce(kafka, topics.of(sensor), clients, [now] * len(clients),
                 rng.integers(0, 10, len(clients)).astype(float).tolist(), sensor)
    extra = ["--no-idempotence"] if no_idempotence else []
    procs = [_spawn("_run", kind, "--bootstrap", kafka.bootstrap_servers, "--prefix", prefix,
                    "--group", f"{prefix}{kind}", "--batch-size", "2000", *extra)
             for kind in ("windows", "join")]
    consumer = Consumer({**kafka.client_config(), "group.id": f"{prefix}reader",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": kafka.session_timeout_ms,
                         "fetch.wait.max.ms": 5})
    consumer.subscribe([topics.predictions, topics.FD])
    features_at: dict[tuple[str, int], float] = {}  # when the reading's FD row was readable
    first: dict[tuple[str, int], float] = {}
    count: dict[tuple[str, int], int] = {}
    done: dict[tuple[str, int], float] = {}
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for msg in consumer.consume(10_000, 0.01):
                value = msg.value()
                if msg.error() is not None or value is None:
                    continue
                arrived = time.time() * 1000
                p = orjson.loads(value)
                if msg.topic() == topics.FD:
                    features_at.setdefault((p["client"], p["timestamp_ms"]), arrived)
                    continue
                if p["trigger"] not in ("FA", "FI", "FD"):
                    continue
                key = (p["client"], p["timestamp_ms"])
                first.setdefault(key, arrived)
                count[key] = count.get(key, 0) + 1
                if count[key] == 3:
                    done[key] = arrived

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(12)  # group joins (window, join, reader)
    producer = make_producer(kafka, **{"linger.ms": 1, **(NO_IDEMPOTENCE if no_idempotence
                                                          else {})})
    sent: dict[tuple[str, int], float] = {}
    tick = 0.01
    per_tick = max(1, int(args.rate * tick))
    start = time.perf_counter()
    k = 0
    values = rng.normal(50, 5, per_tick * int(args.seconds / tick) + 1)
    for step in range(int(args.seconds / tick)):
        target = start + step * tick
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        for _ in range(per_tick):
            client = clients[k % len(clients)]
            wall = time.time() * 1000
            ts = int(wall)
            key = (client, ts)
            if key in sent:  # one reading per client and millisecond
                k += 1
                continue
            sent[key] = wall
            producer.produce(topics.SZ, key=client, value=reading_message(client, ts, values[k],
                                                                          "SZ"),
                             partition=partition_for(client, PARTITIONS))
            k += 1
        producer.poll(0)
    producer.flush(30)
    elapsed = time.perf_counter() - start
    time.sleep(5)
    stop.set()
    reader.join(10)
    for p in procs:
        p.terminate()
        p.wait(30)
    consumer.close()
    firsts = np.array([first[k] - sent[k] for k in sent if k in first])
    full = np.array([done[k] - sent[k] for k in sent if k in done])
    hop1 = np.array([features_at[k] - sent[k] for k in sent if k in features_at])
    hop2 = np.array([first[k] - features_at[k] for k in sent if k in first and k in features_at])
    label = "producers without idempotence (acks=all, 1 in flight)" if no_idempotence else (
        "runtime defaults (idempotent producers)")
    print(f"[{label}] latency at {len(sent) / elapsed:,.0f} SZ events/s offered for "
          f"{elapsed:.0f} s "
          f"({len(sent):,} readings, {len(firsts):,} with a prediction, grace 0): "
          f"SZ -> first prediction p50 {np.percentile(firsts, 50):.1f} ms, "
          f"p99 {np.percentile(firsts, 99):.1f} ms; SZ -> all three (FA, FI, FD) joined "
          f"p50 {np.percentile(full, 50):.1f} ms, p99 {np.percentile(full, 99):.1f} ms, "
          f"max {full.max():.1f} ms. Split: SZ -> FD row readable p50 "
          f"{np.percentile(hop1, 50):.1f} / p99 {np.percentile(hop1, 99):.1f} ms; FD row -> "
          f"first prediction p50 {np.percentile(hop2, 50):.1f} / p99 "
          f"{np.percentile(hop2, 99):.1f} ms")


def bench_broker_hop(kafka: KafkaSettings, args: argparse.Namespace,
                     producer_conf: dict[str, str | int | bool]) -> None:
    """The floor under any end-to-end latency: one bare produce -> consume hop on this broker,
    same client settings as the latency run (linger 1 ms, fetch.wait.max.ms 5)."""
    topic = f"hop{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka, [TopicSpec(topic, PARTITIONS)], TopicSettings())
    consumer = Consumer({**kafka.client_config(), "group.id": f"{topic}-reader",
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5,
                         "session.timeout.ms": kafka.session_timeout_ms})
    consumer.subscribe([topic])
    latencies: list[float] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for msg in consumer.consume(1_000, 0.01):
                value = msg.value()
                if msg.error() is None and value is not None:
                    latencies.append(time.time() * 1000 - float(value))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(6)  # group join
    producer = make_producer(kafka, **{"linger.ms": 1, **producer_conf})
    for i in range(args.hop_messages):
        producer.produce(topic, value=str(time.time() * 1000).encode(), partition=i % PARTITIONS)
        producer.poll(0)
        time.sleep(0.001)
    producer.flush(30)
    time.sleep(2)
    stop.set()
    reader.join(10)
    consumer.close()
    hops = np.array(latencies)
    label = "without idempotence" if producer_conf else "idempotent producer, Braid's default"
    print(f"bare broker hop, {label} (produce -> consume, ~1,000 msg/s, {len(hops):,} msgs): "
          f"p50 {np.percentile(hops, 50):.1f} ms, p99 {np.percentile(hops, 99):.1f} ms, "
          f"max {hops.max():.1f} ms (SZ -> prediction crosses three such hops)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("_windows", "_run"):
        p = argparse.ArgumentParser()
        p.add_argument("mode")
        if sys.argv[1] == "_run":
            p.add_argument("kind", choices=["windows", "join"])
        p.add_argument("--bootstrap")
        p.add_argument("--prefix")
        p.add_argument("--group")
        p.add_argument("--grace-ms", type=int, default=0)
        p.add_argument("--batch-size", type=int, default=10_000)
        p.add_argument("--idle-s", type=float, default=4.0)
        p.add_argument("--no-idempotence", action="store_true")
        a = p.parse_args()
        (worker_windows if a.mode == "_windows" else worker_processor)(a)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=2_000)
    parser.add_argument("--minutes", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--latency-clients", type=int, default=10_000)
    parser.add_argument("--hop-messages", type=int, default=3_000)
    parser.add_argument("--skip", choices=["throughput", "latency"], default=None)
    args = parser.parse_args()
    settings = StackSettings(state_dir=Path(tempfile.mkdtemp(prefix="braid-bench-")),
                             broker_port=free_port(), services=["broker"], durable=False)
    stack.up(settings, create_topics=False)
    try:
        kafka = settings.local_kafka_settings()
        print(f"broker: in-memory Tansu; machine: {os.cpu_count()} cores")
        if args.skip != "throughput":
            bench_throughput(kafka, args)
        if args.skip != "latency":
            bench_broker_hop(kafka, args, {})
            bench_broker_hop(kafka, args, NO_IDEMPOTENCE)
            args.clients = args.latency_clients
            bench_latency(kafka, args)
            bench_latency(kafka, args, no_idempotence=True)
    finally:
        stack.down(settings)


if __name__ == "__main__":
    main()

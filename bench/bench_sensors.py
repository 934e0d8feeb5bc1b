"""Benchmark of the sensors speed layer; prints its figures.

    .venv/bin/python bench/bench_sensors.py [--clients 2000] [--minutes 25] [--rates 10000,1000]

1. **Window processor throughput**: simulated SZ readings are produced to a 100-partition SZ
   topic first; then the window processor consumes them all, once with one process and once
   with two processes sharing the partitions (one consumer group; the processes start together,
   once each is imported and built, so one does not find the topic half consumed by the
   other, leaving it a half of the partitions to finish alone). Figures: SZ events/s per
   process (first to last consumed message) and for the whole group, the readings consumed
   twice (re-read after a rebalance: the window state moves with its partition, so few), each
   process's CPU time and how busy the host's cores were meanwhile (two processes cannot
   double the throughput of one on a host whose cores one process and the broker already fill).
2. **Latency**, at each of `--rates` SZ events/s: the window and join processors run (one
   process each) at their default settings (grace 5 s: a reading's features go out at once and
   are corrected if a reading within grace lands behind it; max lateness 2 h; batch size,
   poll timeout and the consumers' `fetch.wait.max.ms` the runtime's); SX and SY are primed for
   every client, then `--prefill-s` (600: the window) seconds of readings at the rate are
   produced at once and the run waits until each has its prediction (not timed: the window
   buffer then holds a window's worth of readings, as in a steady state; a 70-second run alone
   leaves a ninth of that in it, and the buffer's size is what a poll used to cost), then SZ
   readings stamped with the wall clock are produced at the rate for `--seconds`. With every
   12th SZ reading of a client it also reports SX, with every 6th SY (the simulator's
   intervals: 5, 60 and 30 s), so that their event time moves on as in a live system: the
   join settles a client's events once every input is past them; SX and SY events get their
   predictions too, which Braid's join computes and the peer ignores. A consumer of
   predictions.sensors (and of FD, for the split) records, for each SZ reading, when its
   event's first prediction (key `client|t|SZ`) arrives: the join answers a reading only
   once its FA, FI and FD are all there. `--batch-size`, `--poll-timeout-ms` and
   `--processor-fetch-wait-ms` change the processors' (and the peer's) settings; every
   run prints the settings it used and which differ from the processors' defaults. The bench's
   own readers use `fetch.wait.max.ms` = `--fetch-wait-ms` (10: a measuring consumer adds no
   wait of its own).
   Production runs `--warm-up-s` (10) seconds at the rate before the `--seconds` (60)
   measured: the fresh broker's JIT and every client's first reading (10,000 clients at
   1,000/s take 10 s to cycle) fall there; the warm-up's latency is printed apart, not counted.
   Every `--lag-every-s` (10) seconds of the measured run it prints the readings sent without
   a prediction yet (the pipeline's backlog: does it keep up?) and the window and join groups'
   committed-offset lag (see `LagMonitor` for why that one is not a measure of keeping up).
   After each run: the CPU each process used while measured (broker, window, join, the bench
   itself, every other process on the machine) and, for Braid, the processors' own step
   timings (`streaming.runtime.step_timings`: per phase, arrival lag, collections, slowest
   steps). `BENCH_TIMELINE=1` also prints the latency per second of the run;
   `BENCH_PYSPY=<folder>` samples both workers with py-spy (non-blocking) while measured and
   prints the functions holding the most samples; `BENCH_JFR=<folder>` records the broker
   with Java Flight Recorder meanwhile and prints which requests its samples served
   (`bench/broker_profile.py`).
3. **The peer**: the same run, same rate, topics, partitions, clients and settings (batch size,
   poll timeout and `fetch.wait.max.ms` the processors', consuming as the runtime does:
   what is fetched, else a wait for the first message), with two pass-through processes
   instead of Braid's (`_pass`: SZ -> one message on each of FA, FI, FD; a reading's FA, FI
   and FD -> one prediction once all three arrived, as Braid's join waits for all three; no
   features, history or checkpoints). Its latency is the floor
   that the broker, librdkafka and a Python loop set on this machine; Braid / peer is printed,
   counted the same way (a reading's first prediction).
4. **Broker hop**: one bare produce -> consume hop with the same client settings (SZ ->
   prediction crosses three). `--idempotence off|both` also measures without idempotence
   (acks=all, one request in flight), to show what idempotence costs.

A fresh Apache Kafka broker (`infra.stack`, state in a temporary folder) is started for each
measurement and stopped by PID afterwards, so no run reads another's data.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from bench import broker_profile  # noqa: E402
from bench.broker_hop import hop_latencies  # noqa: E402
from bench.step_report import step_timing_lines  # noqa: E402
from cli.logging_setup import configure_logging  # noqa: E402
from features.sensors.simulator import SimulatorConfig, simulate  # noqa: E402
from features.sensors.window_math import (  # noqa: E402
    DEFAULT_GRACE_MS,
    DEFAULT_MAX_LATENESS_MS,
    WINDOW_MS,
)
from infra import stack  # noqa: E402
from infra.testing import broker_settings  # noqa: E402
from streaming.partitioning import partition_for  # noqa: E402
from streaming.pipelines.sensors import (  # noqa: E402
    SensorTopics,
    join_processor,
    reading_message,
    window_processor,
)
from streaming.runtime.clients import consume_available, make_consumer, make_producer  # noqa: E402
from streaming.settings import KafkaSettings, TopicSettings  # noqa: E402
from streaming.topics import TopicSpec, ensure_topics  # noqa: E402

PARTITIONS = 100


@dataclass(frozen=True)
class ProcessorSettings:
    """What the window and join processors (and the peer) run with in this bench."""

    batch_size: int
    poll_timeout_ms: int
    fetch_wait_ms: int

    @classmethod
    def defaults(cls) -> ProcessorSettings:
        """The processors' own defaults (`window_processor`, `join_processor`, `KafkaSettings`:
        what `braid sensors windows | join` run with when given nothing)."""
        windows = inspect.signature(window_processor).parameters
        join = inspect.signature(join_processor).parameters
        for name in ("batch_size", "poll_timeout_s"):
            assert windows[name].default == join[name].default, name
        fetch_wait = KafkaSettings.model_fields["fetch_wait_max_ms"].default
        return cls(int(windows["batch_size"].default),
                   round(float(windows["poll_timeout_s"].default) * 1000), int(fetch_wait))

    @classmethod
    def of(cls, args: argparse.Namespace) -> ProcessorSettings:
        base = cls.defaults()
        return cls(base.batch_size if args.batch_size is None else args.batch_size,
                   base.poll_timeout_ms if args.poll_timeout_ms is None else args.poll_timeout_ms,
                   base.fetch_wait_ms if args.processor_fetch_wait_ms is None
                   else args.processor_fetch_wait_ms)

    def worker_args(self) -> list[str]:
        return ["--batch-size", str(self.batch_size), "--poll-timeout-ms",
                str(self.poll_timeout_ms), "--fetch-wait-ms", str(self.fetch_wait_ms)]

    def describe(self) -> str:
        """One line: every setting, and which differ from the defaults (set on the command
        line: --batch-size, --poll-timeout-ms, --processor-fetch-wait-ms)."""
        base = ProcessorSettings.defaults()
        parts = [f"grace {DEFAULT_GRACE_MS} ms (default)",
                 f"max lateness {DEFAULT_MAX_LATENESS_MS} ms (default)"]
        for label, flag, value, default, unit in (
                ("batch size", "--batch-size", self.batch_size, base.batch_size, ""),
                ("poll timeout", "--poll-timeout-ms", self.poll_timeout_ms,
                 base.poll_timeout_ms, " ms"),
                ("consumers' fetch.wait.max.ms", "--processor-fetch-wait-ms",
                 self.fetch_wait_ms, base.fetch_wait_ms, " ms")):
            note = ("default" if value == default
                    else f"CHANGED from the default {default:,}{unit} by {flag}")
            parts.append(f"{label} {value:,}{unit} ({note})")
        changed = self != base
        return (f"processor settings: {', '.join(parts)}"
                + ("" if changed else " -- all the processors' defaults"))


BENCH_ONLY = ("bench-only settings (not the processors'): its own readers (predictions, FD, "
              "the broker hop) use fetch.wait.max.ms = --fetch-wait-ms, so a measuring consumer "
              "adds no wait of its own and reads Braid and the peer alike; worker processes log "
              "at WARNING (BRAID_LOG_LEVEL), so logging stays off the measured CPU")


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
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap,
                          fetch_wait_max_ms=args.fetch_wait_ms)
    topics = SensorTopics.prefixed(args.prefix)
    proc = window_processor(kafka, grace_ms=args.grace_ms, topics=topics, group=args.group,
                            batch_size=args.batch_size,
                            poll_timeout_s=args.poll_timeout_ms / 1000)
    if args.barrier:  # start with the group's other workers (`_start_together`)
        print("ready", flush=True)
        sys.stdin.readline()
    proc.start()
    first = last = None
    host_first = host_last = (0, 0)  # the host's CPU ticks at the first and last message
    busy = 0.0  # seconds spent in steps that consumed something (excludes rebalance waits)
    idle_since = time.monotonic()
    while True:
        t0 = time.perf_counter()
        n = proc.step()
        now = time.time()
        if n:
            busy += time.perf_counter() - t0
            if first is None:
                first, host_first = now, _host_ticks()
            last, host_last = now, _host_ticks()
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > (args.idle_s if first is not None else 60):
            break
    proc.close()
    print(json.dumps({"consumed": proc.stats.consumed, "produced": proc.stats.produced,
                      "first": first, "last": last, "busy": busy,
                      "batches": proc.stats.batches, "cpu_s": time.process_time(),
                      "host_first": host_first, "host_last": host_last}))


NO_IDEMPOTENCE: dict[str, str | int | bool] = {
    "enable.idempotence": False, "acks": "all", "max.in.flight.requests.per.connection": 1}


def worker_processor(args: argparse.Namespace) -> None:
    """Run the window or join processor until SIGTERM (latency benchmark)."""
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap,
                          fetch_wait_max_ms=args.fetch_wait_ms)
    if args.no_idempotence:  # bench experiment: the runtime's producer without idempotence
        import streaming.runtime.processor as processor_module

        def producer(kafka: KafkaSettings, **overrides: object) -> Producer:
            return make_producer(kafka, **{**NO_IDEMPOTENCE, **overrides})

        processor_module.make_producer = producer
    topics = SensorTopics.prefixed(args.prefix)
    build = window_processor if args.kind == "windows" else join_processor
    proc = build(kafka, grace_ms=args.grace_ms, topics=topics, group=args.group,
                 batch_size=args.batch_size, poll_timeout_s=args.poll_timeout_ms / 1000)
    # SIGUSR1: the measured run begins; forget the steps of the set-up, prefill and warm-up
    signal.signal(signal.SIGUSR1, lambda *_: proc.timings.reset())
    proc.run()  # SIGTERM ends it (checkpoint, commit, leave the group)
    print(json.dumps({**vars(proc.stats), "timings": proc.timings.summary()}))


def worker_passthrough(args: argparse.Namespace) -> None:
    """The peer of the latency run: the same two hops with the same clients and settings, doing
    nothing but forward. `windows`: each SZ reading -> one message on each of FA, FI, FD (same
    key, same partition). `join`: one prediction per reading once its FA, FI and FD messages
    have all arrived, as Braid's join answers a reading only with all three (it counts them per
    reading and forgets the reading then; forwarding the first of the three would measure the
    fastest of three hops against Braid's slowest). No checkpoints, no features, no history:
    the floor that broker, librdkafka and a Python loop set."""
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap,
                          fetch_wait_max_ms=args.fetch_wait_ms)
    topics = SensorTopics.prefixed(args.prefix)
    if args.kind == "windows":
        inputs, outputs = [topics.SZ], [topics.FA, topics.FI, topics.FD]
    else:
        inputs = [topics.SX, topics.SY, topics.FA, topics.FI, topics.FD]
        outputs = [topics.predictions]
    features = {topics.FA, topics.FI, topics.FD}
    waiting: dict[tuple[str, int], int] = {}  # join: per reading, its feature messages so far
    consumer = make_consumer(kafka, args.group, **{"enable.auto.commit": True,
                                                   "enable.partition.eof": False})
    producer = make_producer(kafka, **(NO_IDEMPOTENCE if args.no_idempotence else {}))
    consumer.subscribe(inputs)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        for msg in consume_available(consumer, args.batch_size, args.poll_timeout_ms / 1000):
            value = msg.value()
            if msg.error() is not None or value is None:
                continue
            if args.kind == "join":
                topic = msg.topic()
                if topic not in features:
                    continue
                reading = orjson.loads(value)
                seen = (reading["client"], reading["timestamp_ms"])
                arrived = waiting.pop(seen, 0) + 1
                if arrived < len(features):
                    waiting[seen] = arrived
                    continue
                value = orjson.dumps({"client": reading["client"],
                                      "timestamp_ms": reading["timestamp_ms"], "trigger": "SZ"})
            partition = int(msg.partition() or 0)
            for out in outputs:
                producer.produce(out, key=msg.key(), value=value, partition=partition)
        producer.poll(0)
    consumer.close()
    producer.flush(10)


def _spawn(*argv: str, barrier: bool = False) -> subprocess.Popen[str]:
    """A worker process; its stderr goes to a temporary file (`_result` shows it on failure).
    `barrier`: it waits for a line on its stdin before it starts (`_start_together`)."""
    env = {**os.environ, "BRAID_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
    stderr = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed with the process
        mode="w+", prefix="bench-sensors-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE if barrier else None, stderr=stderr,
                            text=True, env=env)
    proc.stderr_path = stderr.name  # type: ignore[attr-defined]
    return proc


def _start_together(workers: list[subprocess.Popen[str]]) -> None:
    """Let barrier workers go at once, when every one is ready (imported and built: a second
    worker starting seconds after the first would find much of the topic consumed and, with
    the range assignor, its half of the partitions left for it alone)."""
    for worker in workers:
        assert worker.stdout is not None
        while (line := worker.stdout.readline()) and line.strip() != "ready":
            pass
        if not line:
            raise RuntimeError(f"a worker exited {worker.wait()} before it was ready")
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()


def _result(worker: subprocess.Popen[str], timeout_s: float = 900) -> dict[str, Any]:
    """The last line a worker printed (its JSON stats); its stderr's end if it printed none."""
    out = worker.communicate(timeout=timeout_s)[0].strip().splitlines()
    path = Path(worker.stderr_path)  # type: ignore[attr-defined]
    if not out:
        tail = path.read_text()[-3000:]
        raise RuntimeError(f"a worker exited {worker.returncode} without its stats:\n{tail}")
    path.unlink(missing_ok=True)
    result: dict[str, Any] = json.loads(out[-1])
    return result


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
    settings = ProcessorSettings.of(args)
    print(f"  {settings.describe()}")
    for processes in (1, 2):
        group = f"{prefix}windows-{processes}"
        workers = [_spawn("_windows", "--bootstrap", kafka.bootstrap_servers, "--prefix", prefix,
                          "--group", group, "--grace-ms", str(DEFAULT_GRACE_MS),
                          *settings.worker_args(), "--idle-s", "4", "--barrier", barrier=True)
                   for _ in range(processes)]
        _start_together(workers)
        stats = [_result(w) for w in workers]
        # the host's CPU from the group's first consumed message to its last
        busy_share = _busy_share(min(s["host_first"] for s in stats),
                                 max(s["host_last"] for s in stats))
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
        cpu = ', '.join(f"{s['cpu_s']:.1f}" for s in stats)
        print(f"  CPU: {cpu} s per process (start to exit, librdkafka's threads included); "
              f"the host's {os.cpu_count()} cores {100 * busy_share:.0f}% busy from the first "
              f"message consumed to the last (everything on the host: the broker, other load)")


def _host_ticks() -> tuple[int, int]:
    """(all CPU ticks, idle and iowait ticks) since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


def _busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    total, idle = (b - a for a, b in zip(before, after, strict=True))
    return 1 - idle / max(total, 1)


@dataclass
class Latency:
    first_p50: float
    first_p99: float


#: per SZ reading, a client also reports SX every 12th and SY every 6th time (the simulator's
#: intervals: SZ 5 s, SX 60 s, SY 30 s), so that their event time moves on as in a live system
SX_EVERY = SimulatorConfig().sx_interval_ms // SimulatorConfig().sz_interval_ms
SY_EVERY = SimulatorConfig().sy_interval_ms // SimulatorConfig().sz_interval_ms


def _mode_and_alarm(k: int, clients: int) -> list[str]:
    """The SX and SY readings that go with the k-th SZ reading of the load (clients round
    robin; staggered, so that not every client reports in the same round)."""
    turn = k // clients + k % clients
    return [sensor for sensor, every in (("SX", SX_EVERY), ("SY", SY_EVERY))
            if turn % every == 0]


def _prefill(kafka: KafkaSettings, topics: SensorTopics, clients: list[str], rate: int,
             prefill_ms: int, live_from: int, rng: np.random.Generator,
             received: list[int]) -> None:
    """`--prefill-s`: the readings of the `prefill_ms` before the run at `rate`, produced at
    once (event times in order, the live load's clients), then wait until each has its
    prediction: the window buffer then holds what it holds in a steady state (a window's
    worth of readings), not the few seconds a run alone would leave in it."""
    count = rate * prefill_ms // 1000
    k = np.arange(count)
    ts = (live_from - prefill_ms + k * prefill_ms // count).tolist()
    who = [clients[i % len(clients)] for i in range(count)]
    began = time.perf_counter()
    _produce(kafka, topics.SZ, who, ts, rng.normal(50, 5, count).tolist(), "SZ")
    for sensor in ("SX", "SY"):
        mine = [i for i in range(count) if sensor in _mode_and_alarm(i, len(clients))]
        _produce(kafka, topics.of(sensor), [who[i] for i in mine], [ts[i] for i in mine],
                 [float(i % 3) for i in mine], sensor)
    produced = time.perf_counter() - began
    # every reading answered, and then nothing more for 3 s: corrections (a reading's SX or SY
    # at its own time comes after its first prediction) counted too, the backlog is drained
    last, quiet_since = -1, time.perf_counter()
    while time.perf_counter() - began < 900:
        time.sleep(0.5)
        if received[0] != last:
            last, quiet_since = received[0], time.perf_counter()
        elif received[0] >= count and time.perf_counter() - quiet_since >= 3:
            break
    print(f"  prefill: {count:,} readings over the {prefill_ms / 1000:g} s before the run "
          f"(produced in {produced:.1f} s), {received[0]:,} with a prediction after "
          f"{time.perf_counter() - began:.1f} s; not timed", flush=True)


def bench_latency(kafka: KafkaSettings, args: argparse.Namespace, engine: str,
                  no_idempotence: bool = False) -> Latency:
    """`engine`: "braid" (the window and join processors) or "passthrough" (the peer)."""
    prefix = f"l{uuid.uuid4().hex[:6]}."
    topics = SensorTopics.prefixed(prefix)
    ensure_topics(kafka, topics.specs(PARTITIONS), TopicSettings())
    clients = [f"c{i:06d}" for i in range(args.clients)]
    live_from = int(time.time() * 1000)  # event times below: set-up and prefill, not timed
    prefill_ms = int(args.prefill_s * 1000)
    rng = np.random.default_rng(2)
    for sensor in ("SX", "SY"):  # every client's SX and SY, before any of its SZ readings
        _produce(kafka, topics.of(sensor), clients,
                 [live_from - prefill_ms - 60_000] * len(clients),
                 rng.integers(0, 10, len(clients)).astype(float).tolist(), sensor)
    extra = ["--no-idempotence"] if no_idempotence else []
    mode = "_run" if engine == "braid" else "_pass"
    settings = ProcessorSettings.of(args)
    procs = [_spawn(mode, kind, "--bootstrap", kafka.bootstrap_servers, "--prefix", prefix,
                    "--group", f"{prefix}{kind}", *settings.worker_args(), *extra)
             for kind in ("windows", "join")]
    consumer = Consumer({**kafka.client_config(), "group.id": f"{prefix}reader",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": kafka.session_timeout_ms,
                         "fetch.wait.max.ms": args.fetch_wait_ms})
    consumer.subscribe([topics.predictions, topics.FD])
    features_at: dict[tuple[str, int], float] = {}  # when the reading's FD row was readable
    first: dict[tuple[str, int], float] = {}
    stop = threading.Event()
    prefilled = [0]  # predictions of prefill readings received

    def read() -> None:
        while not stop.is_set():
            for msg in consume_available(consumer, 10_000, 0.1):  # no fixed wait per call
                value = msg.value()
                if msg.error() is not None or value is None:
                    continue
                arrived = time.time() * 1000
                p = orjson.loads(value)
                if p["timestamp_ms"] < live_from:
                    prefilled[0] += msg.topic() == topics.predictions and p["trigger"] == "SZ"
                    continue
                if msg.topic() == topics.FD:
                    features_at.setdefault((p["client"], p["timestamp_ms"]), arrived)
                    continue
                if p["trigger"] != "SZ":
                    continue
                first.setdefault((p["client"], p["timestamp_ms"]), arrived)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(12)  # group joins (window, join, reader)
    if prefill_ms:
        _prefill(kafka, topics, clients, args.rate, prefill_ms, live_from, rng, prefilled)
    producer = make_producer(kafka, **{"linger.ms": 1, **(NO_IDEMPOTENCE if no_idempotence
                                                          else {})})
    sent: dict[tuple[str, int], float] = {}
    tick = 0.01
    per_tick = max(1, int(args.rate * tick))
    warm_steps = int(args.warm_up_s / tick)
    steps = warm_steps + int(args.seconds / tick)
    k = 0
    values = rng.normal(50, 5, per_tick * steps + 1)
    label = "Braid" if engine == "braid" else "pass-through peer"
    monitor = LagMonitor(
        kafka, {f"{prefix}windows": [topics.SZ],
                f"{prefix}join": [topics.SX, topics.SY, topics.FA, topics.FI, topics.FD]},
        args.lag_every_s, lambda: (len(sent), len(first)))
    start = time.perf_counter()
    measured_from = float("inf")  # wall ms: readings sent from then on are counted
    profilers: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    jfr: Path | None = None
    cpu = CpuShares({"windows": procs[0].pid, "join": procs[1].pid})
    for step in range(steps):
        if step == warm_steps:  # the warm-up is over: measure from here
            measured_from = time.time() * 1000
            measured_start = time.perf_counter()
            profilers = _profile([p.pid for p in procs], ["windows", "join"],
                                 f"{engine}-{args.rate}", args.seconds)
            jfr = _profile_broker(f"{engine}-{args.rate}", args.seconds)
            cpu.start()
            if engine == "braid":  # the processors' step timings cover the measured run only
                for p in procs:
                    p.send_signal(signal.SIGUSR1)
            if args.lag_every_s > 0:
                print(f"  [{label}] backlog and consumer lag at {args.rate:,} SZ/s, every "
                      f"{args.lag_every_s:g} s of the measured run:", flush=True)
                monitor.start()
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
            partition = partition_for(client, PARTITIONS)
            producer.produce(topics.SZ, key=client, value=reading_message(client, ts, values[k],
                                                                          "SZ"),
                             partition=partition)
            for sensor in _mode_and_alarm(k, len(clients)):  # SX and SY as the simulator has
                producer.produce(topics.of(sensor), key=client, partition=partition,
                                 value=reading_message(client, ts, float(k % 3), sensor))
            k += 1
        producer.poll(0)
    producer.flush(30)
    elapsed = time.perf_counter() - measured_start
    shares = cpu.stop()
    if args.lag_every_s > 0:
        monitor.stop()
        monitor.sample(time.perf_counter() - measured_start)  # once more, production over
    time.sleep(5)
    stop.set()
    reader.join(10)
    for p in procs:
        p.terminate()
    results = {kind: _result(p, 60) if engine == "braid" else None
               for kind, p in zip(("windows", "join"), procs, strict=True)}
    for p in procs:
        p.wait(30)
    consumer.close()
    print(f"    CPU while measured (% of one core; {os.cpu_count()} cores): {shares}")
    for kind, result in results.items():
        if result is not None:
            print_timings(f"{kind} processor", result["timings"])
    _print_profiles(profilers)
    if jfr is not None:
        _print_broker_profile(jfr)
    warm = [k for k in sent if sent[k] < measured_from]
    counted = [k for k in sent if sent[k] >= measured_from]
    firsts = np.array([first[k] - sent[k] for k in counted if k in first])
    hop1 = np.array([features_at[k] - sent[k] for k in counted if k in features_at])
    hop2 = np.array([first[k] - features_at[k] for k in counted
                     if k in first and k in features_at])
    if os.environ.get("BENCH_TIMELINE"):
        t0 = min(sent.values())
        for sec in range(int(args.warm_up_s + args.seconds) + 1):
            ks = [k for k in sent if k in first and int((sent[k] - t0) / 1000) == sec]
            if ks:
                lat = np.array([first[k] - sent[k] for k in ks])
                f1 = [features_at[k] - sent[k] for k in ks if k in features_at]
                fd = f"{np.percentile(f1, 50):8.1f}" if f1 else "     n/a"
                phase = "warm-up" if sec < args.warm_up_s else "measured"
                print(f"  t={sec:3d}s ({phase}) n={len(ks):6d} first p50 "
                      f"{np.percentile(lat, 50):8.1f} p99 {np.percentile(lat, 99):8.1f}  "
                      f"FD p50 {fd}")
    if warm:
        warm_lat = np.array([first[k] - sent[k] for k in warm if k in first])
        print(f"  [{label}] warm-up, not counted below: the first {args.warm_up_s:g} s of "
              f"production ({len(warm):,} readings, {len(warm_lat):,} with a prediction): "
              f"p50 {np.percentile(warm_lat, 50):.1f} ms, p99 "
              f"{np.percentile(warm_lat, 99):.1f} ms, max {warm_lat.max():.1f} ms")
    label += ", producers without idempotence" if no_idempotence else ""
    print(f"[{label}] latency at {len(counted) / elapsed:,.0f} SZ events/s offered for "
          f"{elapsed:.0f} s "
          f"({len(counted):,} readings, {len(firsts):,} with a prediction, "
          f"{'the settings printed above' if engine == 'braid' else 'no state, same settings'}"
          f"): "
          f"SZ -> its first prediction p50 "
          f"{np.percentile(firsts, 50):.1f} ms, p99 {np.percentile(firsts, 99):.1f} ms, "
          f"max {firsts.max():.1f} ms. Split: SZ -> FD row readable p50 "
          f"{np.percentile(hop1, 50):.1f} / p99 {np.percentile(hop1, 99):.1f} ms; FD row -> "
          f"first prediction p50 {np.percentile(hop2, 50):.1f} / p99 "
          f"{np.percentile(hop2, 99):.1f} ms")
    return Latency(*(float(np.percentile(firsts, q)) for q in (50, 99)))


def print_timings(label: str, t: dict[str, Any]) -> None:
    """The processor's own split of its steps (`streaming.runtime.step_timings`)."""
    for line in step_timing_lines(t, label, item="reading"):
        print(f"    {line}", flush=True)


def _profile(pids: list[int], kinds: list[str], label: str, seconds: float
             ) -> list[tuple[str, subprocess.Popen[bytes], Path]]:
    """`BENCH_PYSPY=<folder>`: sample each worker with py-spy (non-blocking: the worker is not
    paused) while the load runs; raw collapsed stacks go to the folder."""
    folder = os.environ.get("BENCH_PYSPY")
    spy = Path(sys.executable).parent / "py-spy"
    if not folder or not spy.exists():
        return []
    Path(folder).mkdir(parents=True, exist_ok=True)
    out = []
    for pid, kind in zip(pids, kinds, strict=True):
        path = Path(folder) / f"{label}-{kind}.txt"
        proc = subprocess.Popen(
            [str(spy), "record", "--nonblocking", "--format", "raw", "-r", "200",
             "-d", str(int(seconds)), "-o", str(path), "--pid", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append((kind, proc, path))
    return out


def _print_profiles(profilers: list[tuple[str, subprocess.Popen[bytes], Path]]) -> None:
    """Per profiled worker: the functions holding the most samples (inclusive), in %."""
    for kind, proc, path in profilers:
        proc.wait(60)
        if not path.exists():
            continue
        inclusive: dict[str, int] = {}
        total = 0
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            n = int(count)
            total += n
            for frame in set(stack.split(";")):
                name = frame.split(" (")[0]
                inclusive[name] = inclusive.get(name, 0) + n
        top = sorted(inclusive.items(), key=lambda kv: -kv[1])[:25]
        print(f"    py-spy {kind} ({total:,} samples at 200/s while not idle, {path}): "
              + ", ".join(f"{name} {100 * n / max(total, 1):.0f}%" for name, n in top))


def _profile_broker(label: str, seconds: float) -> Path | None:
    """`BENCH_JFR=<folder>`: record the broker's samples with JFR while the load is measured
    (`bench/broker_profile.py`); the recording's path, or None."""
    folder = os.environ.get("BENCH_JFR")
    pids = broker_profile.broker_pids() if folder else []
    if not folder or len(pids) != 1:
        return None
    path = Path(folder) / f"{label}-broker.jfr"
    return path if broker_profile.start(pids[0], seconds, path) else None


def _print_broker_profile(path: Path, wait_s: float = 30) -> None:
    deadline = time.monotonic() + wait_s  # JFR writes the file when its duration ends
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    print(f"    {broker_profile.summary(path)}")


class CpuShares:
    """CPU used by the bench's processes while the run is measured, in % of one core: the
    broker (this bench's child JVM), the two workers, the bench itself (load and reader), and
    what every other process on the machine used meanwhile (the machine is shared)."""

    def __init__(self, workers: dict[str, int]) -> None:
        import psutil

        me = psutil.Process()
        brokers = [c for c in me.children(recursive=True) if c.pid not in workers.values()
                   and "java" in c.name()]
        self.procs = {"broker": brokers, **{k: [psutil.Process(p)] for k, p in workers.items()},
                      "bench": [me]}
        self.before: dict[str, float] = {}
        self.began = 0.0
        self.machine_before = 0.0

    @staticmethod
    def _busy() -> float:
        import psutil

        t = psutil.cpu_times()
        return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))

    def _used(self) -> dict[str, float]:
        return {k: sum(p.cpu_times().user + p.cpu_times().system for p in ps)
                for k, ps in self.procs.items()}

    def start(self) -> None:
        self.before, self.began, self.machine_before = (self._used(), time.perf_counter(),
                                                        self._busy())

    def stop(self) -> str:
        span = time.perf_counter() - self.began
        used = {k: v - self.before[k] for k, v in self._used().items()}
        others = self._busy() - self.machine_before - sum(used.values())
        return ", ".join(f"{k} {100 * v / span:.0f}%" for k, v in
                         {**used, "other processes": others}.items())


class LagMonitor:
    """Committed-offset lag of the processors' groups (high watermark - committed offset, summed
    over their input partitions) and the pipeline's backlog (readings sent without a prediction
    yet), printed every `every_s` seconds from a thread while the latency run produces.

    The backlog is the lag that says whether the pipeline keeps up. The committed offsets do
    not: the window processor commits only past readings no open 10-minute window needs (a
    restart rebuilds the windows from them), so in a run shorter than the window its group's
    committed lag is every reading sent; the peer never commits (auto-commit stores no offset
    under Braid's consumer settings)."""

    def __init__(self, kafka: KafkaSettings, groups: dict[str, list[str]], every_s: float,
                 backlog: Callable[[], tuple[int, int]]) -> None:
        from confluent_kafka.admin import AdminClient

        self.kafka, self.groups, self.every_s, self.backlog = kafka, groups, every_s, backlog
        self.admin = AdminClient(kafka.client_config())
        self.samples: list[dict[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def lag(self, group: str, topics: list[str]) -> int:
        from confluent_kafka.admin import OffsetSpec

        parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        latest = self.admin.list_offsets({tp: OffsetSpec.latest() for tp in parts})
        ends = {(tp.topic, tp.partition): f.result(30).offset for tp, f in latest.items()}
        reader = Consumer({**self.kafka.client_config(), "group.id": group,
                           "enable.auto.commit": False})
        try:
            committed = reader.committed(parts, timeout=30)
        finally:
            reader.close()
        return sum(max(0, ends[(tp.topic, tp.partition)] - max(tp.offset, 0))
                   for tp in committed)

    def sample(self, elapsed_s: float) -> None:
        row = {"t": round(elapsed_s)}
        for group, topics in self.groups.items():
            row[group] = self.lag(group, topics)
        sent, predicted = self.backlog()
        row["backlog"] = sent - predicted
        self.samples.append(row)
        lags = ", ".join(f"{g} committed lag {row[g]:,}" for g in self.groups)
        print(f"    t={row['t']:3d} s: {lags}; readings sent without a prediction yet "
              f"{row['backlog']:,} (of {sent:,})", flush=True)

    def _loop(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(self.every_s):
            try:
                self.sample(time.monotonic() - start)
            except Exception as error:  # a sample lost is printed, the run goes on
                print(f"    lag sample failed: {error}", flush=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def bench_broker_hop(kafka: KafkaSettings, args: argparse.Namespace,
                     producer_conf: dict[str, str | int | bool]) -> None:
    """The floor under any end-to-end latency: one bare produce -> consume hop on this broker,
    same client settings as the latency run's reader (`bench/broker_hop.py`)."""
    topic = f"hop{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka, [TopicSpec(topic, PARTITIONS)], TopicSettings())
    hops = hop_latencies(kafka, topic, partitions=PARTITIONS, messages=args.hop_messages,
                         fetch_wait_ms=args.fetch_wait_ms, producer_conf=producer_conf)
    label = "without idempotence" if producer_conf else "idempotent producer, Braid's default"
    print(f"bare broker hop, {label} (produce -> consume, ~1,000 msg/s, {len(hops):,} msgs): "
          f"p50 {np.percentile(hops, 50):.1f} ms, p99 {np.percentile(hops, 99):.1f} ms, "
          f"max {hops.max():.1f} ms (SZ -> prediction crosses three such hops)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("_windows", "_run", "_pass"):
        p = argparse.ArgumentParser()
        p.add_argument("mode")
        if sys.argv[1] in ("_run", "_pass"):
            p.add_argument("kind", choices=["windows", "join"])
        p.add_argument("--bootstrap")
        p.add_argument("--prefix")
        p.add_argument("--group")
        p.add_argument("--grace-ms", type=int, default=DEFAULT_GRACE_MS)
        p.add_argument("--batch-size", type=int, required=True)
        p.add_argument("--poll-timeout-ms", type=int, required=True)
        p.add_argument("--idle-s", type=float, default=4.0)
        p.add_argument("--barrier", action="store_true")
        p.add_argument("--no-idempotence", action="store_true")
        p.add_argument("--fetch-wait-ms", type=int, required=True)
        a = p.parse_args()
        configure_logging()  # BRAID_LOG_LEVEL from `_spawn`: WARNING, to stderr
        {"_windows": worker_windows, "_run": worker_processor,
         "_pass": worker_passthrough}[a.mode](a)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=2_000)
    parser.add_argument("--minutes", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="the processors' (and the peer's) micro-batch size (default: the "
                        "processors' own)")
    parser.add_argument("--poll-timeout-ms", type=int, default=None,
                        help="the processors' (and the peer's) longest wait for a first message "
                        "(default: the processors' own)")
    parser.add_argument("--processor-fetch-wait-ms", type=int, default=None,
                        help="fetch.wait.max.ms of the processors' (and the peer's) consumers "
                        "(default: the runtime's, KafkaSettings)")
    parser.add_argument("--rates", default="10000,1000",
                        help="SZ events/s of the latency runs, comma-separated")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="measured seconds of production per latency run (after the "
                        "warm-up)")
    parser.add_argument("--warm-up-s", type=float, default=10.0,
                        help="seconds of production at the rate before the measured run "
                        "(printed apart, not counted: the fresh broker's JIT, the clients' "
                        "first produce per partition)")
    parser.add_argument("--latency-clients", type=int, default=10_000)
    parser.add_argument("--prefill-s", type=float, default=WINDOW_MS / 1000,
                        help="latency runs: first publish this many seconds of readings at the "
                        "rate, before the run (default: the 10-minute window, so that the "
                        "window buffer holds what it holds in a steady state; 0: none)")
    parser.add_argument("--hop-messages", type=int, default=3_000)
    parser.add_argument("--skip", choices=["throughput", "latency"], default=None)
    parser.add_argument("--fetch-wait-ms", type=int, default=10,
                        help="fetch.wait.max.ms of the bench's own readers (not the processors')")
    parser.add_argument("--idempotence", choices=["both", "on", "off"], default="on")
    parser.add_argument("--lag-every-s", type=float, default=10.0,
                        help="latency runs: print the groups' consumer lag this often (0: never)")
    args = parser.parse_args()
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    print(f"machine: {os.cpu_count()} cores; a 10M-step Python loop takes "
          f"{time.perf_counter() - started:.2f} s (CPU speed, to compare runs across machines)")
    steal_before = _cpu_steal()
    try:
        _run(args)
    finally:
        used, stolen = (b - a for a, b in zip(steal_before, _cpu_steal(), strict=True))
        print(f"CPU time stolen by the host during the run: {100 * stolen / max(used, 1):.1f}% "
              f"(/proc/stat; figures from a run with a high share are not comparable)")


def _cpu_steal() -> tuple[int, int]:
    """(all CPU ticks, stolen ticks) since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(fields), fields[7]


def _run(args: argparse.Namespace) -> None:
    print(ProcessorSettings.of(args).describe())
    print(BENCH_ONLY)
    if args.skip != "throughput":
        with fresh_broker() as kafka:
            bench_throughput(kafka, args)
    if args.skip == "latency":
        return
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.idempotence]
    for idempotent in modes:
        with fresh_broker() as kafka:
            bench_broker_hop(kafka, args, {} if idempotent else NO_IDEMPOTENCE)
    args.clients = args.latency_clients
    for rate in (int(r) for r in args.rates.split(",")):
        args.rate = rate
        for idempotent in modes:
            # a fresh broker per run: no run pays for another's logs and groups
            with fresh_broker() as kafka:
                braid = bench_latency(kafka, args, "braid", no_idempotence=not idempotent)
            with fresh_broker() as kafka:
                peer = bench_latency(kafka, args, "passthrough", no_idempotence=not idempotent)
            print(f"  at {rate:,}/s, Braid / pass-through peer (same bench run, topics, "
                  f"partitions and client settings): a reading's first prediction p50 "
                  f"{braid.first_p50 / peer.first_p50:.2f}x, p99 "
                  f"{braid.first_p99 / peer.first_p99:.2f}x")


@contextmanager
def fresh_broker() -> Iterator[KafkaSettings]:
    """A new Apache Kafka broker on free ports, stopped (by PID) afterwards."""
    settings = broker_settings(Path(tempfile.mkdtemp(prefix="braid-bench-")))
    stack.up(settings, create_topics=False)
    try:
        yield settings.local_kafka_settings()
    finally:
        stack.down(settings)

if __name__ == "__main__":
    main()

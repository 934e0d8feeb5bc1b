"""Benchmark of the markets speed layer on a local Apache Kafka broker: a table and a summary.

    .venv/bin/python bench/bench_markets.py [--trades 1000000] [--pairs 8] [--fresh-seconds 30]
    .venv/bin/python bench/bench_markets.py --quick      # 100k trades, 10 s freshness

Synthetic trades (`SyntheticTradeSource`, seeded) are produced first (setup, not measured) to an
8-partition trades topic under a unique prefix. Then, one at a time, so each measured child is the
only heavy process of the bench at that moment, child processes consume that topic from the
beginning in their own consumer group:

1. Braid's candle processor (60 s tumbling OHLCV + VWAP + count, grace 5 s), then Braid's
   indicator processor over the candles it wrote; end to end = trades / (candle span +
   indicator span), i.e. the two stages run back to back.
2. Quix Streams 3.28.1 (bench/quix_ohlcv_app.py in bench/.venv-quix, created if missing): the
   same 60 s tumbling OHLCV + count with Quix's built-in aggregations, .final(), to a topic.
3. The ceiling: a bare confluent-kafka consume(10000) + orjson.loads per message loop.
Throughput = messages / time from the return of the first non-empty consume() (the group join
is excluded) to the last message handled (for Braid: outputs flushed, offsets committed).
4. Freshness: the candle processor runs live (1 s windows, grace 200 ms) while trades stamped
   with the wall clock are produced at --rate trades/s; latency of each candle =
   receive time - (window_end + grace). The first --fresh-warm-up-s (3) seconds of
   production are printed apart, not counted: the first windows of a fresh broker and
   processor pay one-time costs a long-running pipeline does not. Run twice: with Braid's
   default idempotent producers and with producers without idempotence
   (KAFKA_ENABLE_IDEMPOTENCE=false). When production stops every pair goes quiet: its last
   window closes on idle (--idle-timeout-ms, default 2000), through a closure record written
   into `trades` and read back; for those candles the run prints window_end -> received
   (bound: idle timeout + grace, plus one hop) and due -> received, due = max(last trade +
   idle timeout, window_end + grace).
5. Peak RSS (VmHWM) of the candle processor child after 200k and after --trades trades.
The machine load average is printed at the start, after each step and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import pyarrow as pa  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition  # noqa: E402

from bench.step_report import step_timing_lines  # noqa: E402
from features.windows import TumblingWindow  # noqa: E402
from infra import stack  # noqa: E402
from infra.testing import broker_settings  # noqa: E402
from streaming.partitioning import partition_for  # noqa: E402
from streaming.pipelines.markets import (  # noqa: E402
    MarketsTopics,
    candle_processor,
    indicator_processor,
    produce_trades,
)
from streaming.runtime.clients import consume_available, make_consumer, make_producer  # noqa: E402
from streaming.runtime.processor import StreamProcessor  # noqa: E402
from streaming.settings import KafkaSettings, TopicSettings  # noqa: E402
from streaming.sources.synthetic import DEFAULT_PAIRS, SyntheticTradeSource  # noqa: E402
from streaming.topics import TopicSpec, ensure_topics  # noqa: E402

PARTITIONS = 8
SESSION_TIMEOUT_MS = 6_000
QUIX_VERSION = "3.28.1"
QUIX_VENV = REPO / "bench" / ".venv-quix"
QUIX_APP = REPO / "bench" / "quix_ohlcv_app.py"
MEMORY_SMALL = 200_000


# --- timing of consumed messages ------------------------------------------------------------
class _TimedConsumer:
    """Wraps the processor's consumer: notes when the first real message was consumed."""

    def __init__(self, inner: Consumer) -> None:
        self._inner = inner
        self.first: float | None = None
        self.first_cpu = 0.0
        self.first_count = 0

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        messages = self._inner.consume(num_messages, timeout)
        if self.first is None and messages:
            self._note(messages)
        return messages

    def poll(self, timeout: float = -1) -> Message | None:
        message = self._inner.poll(timeout)
        if self.first is None and message is not None:
            self._note([message])
        return message

    def _note(self, messages: list[Message]) -> None:
        real = sum(1 for m in messages if m.error() is None)
        if real:
            self.first = time.time()
            self.first_cpu = _cpu_s()
            self.first_count = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _timed(proc: StreamProcessor) -> _TimedConsumer:
    timed = _TimedConsumer(proc._consumer)  # bench instrumentation only
    proc._consumer = timed  # type: ignore[assignment]
    return timed


def _cpu_s() -> float:
    """CPU seconds of this process so far, every thread (librdkafka's included)."""
    times = os.times()
    return times.user + times.system


def _quiet_logs() -> None:
    import logging

    import structlog
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def _maxrss_kb() -> int:
    """Peak RSS of this process image (VmHWM). Not ru_maxrss: Linux carries the parent's
    high-water mark into a forked child across exec, so every child would report the parent's."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _result(payload: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(payload), flush=True)


def _drain(proc: StreamProcessor, expect: int, timed: _TimedConsumer,
           limit_s: float) -> dict[str, Any]:
    """step() until `expect` messages were consumed; flush and commit; return the timings."""
    proc.start()
    deadline = time.monotonic() + limit_s
    baseline_rss = _maxrss_kb()
    while proc.stats.consumed < expect and time.monotonic() < deadline:
        proc.step()
    proc.checkpoint()  # outputs flushed to the broker: part of the measured work
    last = time.time()
    cpu = _cpu_s() - timed.first_cpu
    stats = vars(proc.stats).copy()
    proc.close()
    return {**stats, "first": timed.first, "first_batch": timed.first_count, "last": last,
            "cpu_s": cpu,
            "maxrss_kb": _maxrss_kb(), "rss_before_consuming_kb": baseline_rss}


# --- child processes ------------------------------------------------------------------------
def child_candles(args: argparse.Namespace) -> None:
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap, session_timeout_ms=SESSION_TIMEOUT_MS)
    topics = MarketsTopics.prefixed(args.prefix)
    proc = candle_processor(kafka, (TumblingWindow(60_000, 5_000),), topics=topics,
                            group=args.group, idle_timeout_ms=3_600_000)
    _result(_drain(proc, args.expect, _timed(proc), args.limit_s))


def child_indicators(args: argparse.Namespace) -> None:
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap, session_timeout_ms=SESSION_TIMEOUT_MS)
    proc = indicator_processor(kafka, topics=MarketsTopics.prefixed(args.prefix),
                               group=args.group)
    _result(_drain(proc, args.expect, _timed(proc), args.limit_s))


def child_ceiling(args: argparse.Namespace) -> None:
    """Bare loop: the same client settings as the processor, consume(10000) + orjson.loads."""
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap, session_timeout_ms=SESSION_TIMEOUT_MS)
    consumer = make_consumer(kafka, args.group)
    consumer.subscribe([MarketsTopics.prefixed(args.prefix).trades])
    consumed = 0
    first: float | None = None
    first_cpu = 0.0
    deadline = time.monotonic() + args.limit_s
    loads = orjson.loads
    while consumed < args.expect and time.monotonic() < deadline:
        messages = consumer.consume(10_000, 0.1)
        if first is None and any(m.error() is None for m in messages):
            first = time.time()
            first_cpu = _cpu_s()
        n = 0
        for msg in messages:
            if msg.error() is None:
                loads(msg.value())  # type: ignore[arg-type]
                n += 1
        consumed += n
    last = time.time()
    cpu = _cpu_s() - first_cpu
    consumer.close()
    _result({"consumed": consumed, "first": first, "last": last, "cpu_s": cpu,
             "maxrss_kb": _maxrss_kb()})


def child_live(args: argparse.Namespace) -> None:
    """The candle processor with 1 s windows, grace 200 ms, run as `braid` runs it
    (`StreamProcessor.run`) until SIGTERM; READY once assigned. Its RESULT carries the step
    durations and the runtime's own split of them (`streaming.runtime.step_timings`)."""
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap, session_timeout_ms=SESSION_TIMEOUT_MS)
    topics = MarketsTopics.prefixed(args.prefix)
    windows = (TumblingWindow(1_000, 200),)
    kafka = kafka.model_copy(update={"enable_idempotence": not args.no_idempotence})
    proc = candle_processor(kafka, windows, topics=topics, group=args.group,
                            idle_timeout_ms=args.idle_timeout_ms)
    if args.no_gc_freeze:  # the A/B of the collector's pauses: run() without gc.freeze()
        import gc
        gc.freeze = lambda: None
    factory = proc._factory
    ready = threading.Event()

    def announced(partition: int) -> Any:
        if not ready.is_set():
            ready.set()
            print("READY", flush=True)
        return factory(partition)

    proc._factory = announced
    steps: list[float] = []  # seconds per step() once assigned (a checkpoint runs inside one)
    step = proc.step

    def timed_step() -> int:
        t0 = time.perf_counter()
        consumed = step()
        if ready.is_set():
            steps.append(time.perf_counter() - t0)
        return consumed

    proc.step = timed_step  # type: ignore[method-assign]
    proc.run()  # SIGTERM ends it (and closes: checkpoint, commit, leave the group)
    ms = np.asarray(steps) * 1000
    _result({**vars(proc.stats), "poll_timeout_s": proc.config.poll_timeout_s,
             "step_p50_ms": float(np.percentile(ms, 50)) if len(ms) else 0.0,
             "step_p99_ms": float(np.percentile(ms, 99)) if len(ms) else 0.0,
             "step_max_ms": float(ms.max()) if len(ms) else 0.0, "steps": len(ms),
             "timings": proc.timings.summary()})


@dataclass(frozen=True)
class FreshnessVariant:
    """One freshness run: its label, whether producers are idempotent, the live child's flags."""

    label: str
    idempotent: bool
    child_flags: tuple[str, ...] = ()


FRESHNESS_VARIANTS = {
    "defaults": FreshnessVariant("Braid defaults (idempotent producers)", True),
    "no-idempotence": FreshnessVariant(
        "KAFKA_ENABLE_IDEMPOTENCE=false (one request in flight)", False, ("--no-idempotence",)),
    # the runtime before the collector fix reached the processors: run() without gc.freeze()
    "no-gc-freeze": FreshnessVariant("Braid defaults without gc.freeze() (the A/B)", True,
                                     ("--no-gc-freeze",)),
}


CHILDREN = {"candles": child_candles, "indicators": child_indicators, "ceiling": child_ceiling,
            "live": child_live}


# --- parent helpers -------------------------------------------------------------------------
def _spawn(argv: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "BRAID_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def _run_child(argv: list[str], timeout_s: float) -> dict[str, Any]:
    proc = _spawn(argv)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT "):]))
    raise RuntimeError(f"child {argv[1:3]} gave no result (rc {proc.returncode}):\n"
                       f"{out[-2000:]}\n{err[-3000:]}")


def _braid_child(kind: str, kafka: KafkaSettings, prefix: str, expect: int,
                 limit_s: float, profile: str | None = None) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", kind, "--bootstrap", kafka.bootstrap_servers,
            "--prefix", prefix, "--group", f"{prefix}{kind}-{uuid.uuid4().hex[:6]}",
            "--expect", str(expect), "--limit-s", str(limit_s)]
    if profile:  # py-spy runs the child and samples it (raw collapsed stacks)
        Path(profile).mkdir(parents=True, exist_ok=True)
        argv = [str(Path(sys.executable).with_name("py-spy")), "record", "--rate", "250",
                "--format", "raw", "--output", str(Path(profile) / f"{kind}.txt"), "--", *argv]
    return _run_child(argv, limit_s + 60)


def _rate(r: dict[str, Any]) -> float:
    """Messages per second, from the return of the first non-empty consume() (the processing
    of that batch is inside the span; its fetch overlapped the group join) to the last handled."""
    span = r["last"] - r["first"]
    return r["consumed"] / span if span > 0 else float("nan")


def _span(r: dict[str, Any]) -> float:
    return float(r["last"] - r["first"])


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min, {os.cpu_count()} cores)"


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}  (load {os.getloadavg()[0]:.2f})", flush=True)


def ensure_quix_venv() -> Path:
    python = QUIX_VENV / "bin" / "python"
    probe = [str(python), "-c", "import quixstreams; print(quixstreams.__version__)"]
    if python.exists():
        done = subprocess.run(probe, capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip() == QUIX_VERSION:
            return python
    _log(f"creating {QUIX_VENV} with quixstreams=={QUIX_VERSION}")
    subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"quixstreams=={QUIX_VERSION}"],
                   check=True)
    return python


def make_trades(count: int, pairs: int) -> pa.Table:
    names = list(DEFAULT_PAIRS)[:pairs]
    return pa.concat_tables(SyntheticTradeSource(count=count, pairs=names, seed=7).batches())


def _candle_topic_spec(name: str) -> TopicSpec:
    return TopicSpec(name, PARTITIONS, cleanup_policy="compact,delete", retention_ms=-1)


# --- 4. freshness -----------------------------------------------------------------------------
def _pin_off_processor() -> int:
    """`--pin`: this process (the load generator and the reader, and the threads they start)
    and every process it started (the broker's JVM, each of its threads) move to every core but
    the last, which the live processor gets alone. Returns that core."""
    import psutil

    cores = list(range(os.cpu_count() or 1))  # not this process's affinity: pinned already
    if len(cores) < 2:
        raise RuntimeError("--pin needs at least two cores")
    processor, others = cores[-1], ",".join(str(c) for c in cores[:-1])
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        subprocess.run(["taskset", "-a", "-p", "-c", others, str(process.pid)],
                       check=True, stdout=subprocess.DEVNULL)
    return processor



def bench_freshness(kafka: KafkaSettings, args: argparse.Namespace,
                    variant: FreshnessVariant) -> dict[str, Any]:
    label, idempotent = variant.label, variant.idempotent
    prefix = f"bm{uuid.uuid4().hex[:8]}."
    topics = MarketsTopics.prefixed(prefix)
    ensure_topics(kafka, [*topics.specs(PARTITIONS), TopicSpec(f"{prefix}warm-up", 1)],
                  TopicSettings())
    grace_ms, size_ms = 200, 1_000
    argv = [sys.executable, __file__, "--child", "live", "--bootstrap",
            kafka.bootstrap_servers, "--prefix", prefix, "--group", f"{prefix}live",
            "--idle-timeout-ms", str(args.idle_timeout_ms), *variant.child_flags]
    pinned = _pin_off_processor() if args.pin else None
    if pinned is not None:  # the processor alone on its core, every thread it starts too
        argv = ["taskset", "-c", str(pinned), *argv]
    child = _spawn(argv)
    assert child.stdout is not None
    started = time.monotonic()
    while child.stdout.readline().strip() != "READY":
        if child.poll() is not None or time.monotonic() - started > 60:
            child.kill()
            raise RuntimeError(f"live candle processor did not start: {child.stderr.read()}")  # type: ignore[union-attr]
    # drain the child's output while it runs: a full pipe would block its logging, and it
    child_lines: list[str] = []
    drains = [threading.Thread(target=lambda f=f: child_lines.extend(f), daemon=True)
              for f in (child.stdout, child.stderr)]
    for drain in drains:
        drain.start()
    profiler = None
    if args.profile_live:  # py-spy samples the live processor while trades flow (not blocking it)
        out = Path(args.profile_live)
        out.mkdir(parents=True, exist_ok=True)
        name = variant.label.split(" (")[0].replace(" ", "-").replace("=", "-").lower()
        profiler = subprocess.Popen(
            [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(child.pid),
             "--rate", "250", "--nonblocking", "--format", "raw",
             "--output", str(out / f"live-{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # (receive wall ms, window_end_ms, the candle's CreateTime = when the processor produced it)
    received: list[tuple[float, int, int]] = []
    received_pairs: list[str] = []  # the pair of each received candle
    stop_reading = threading.Event()
    reader = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": f"{prefix}rd",
                       "enable.auto.commit": False, "fetch.wait.max.ms": 5,
                       "fetch.error.backoff.ms": 5})
    reader.assign([TopicPartition(topics.candles, p, OFFSET_BEGINNING)
                   for p in range(PARTITIONS)])

    def read() -> None:
        while not stop_reading.is_set():
            for msg in consume_available(reader, 1_000, 0.02):  # not a fixed 20 ms wait
                if msg.error() is None and msg.value() is not None:
                    now_ms = time.time() * 1000
                    candle = orjson.loads(msg.value())  # type: ignore[arg-type]
                    received.append((now_ms, int(candle["window_end_ms"]), msg.timestamp()[1]))
                    received_pairs.append(str(candle["pair"]))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()

    # `--fresh-warm-up-s` of production first, not counted (printed apart): the first windows
    # of a fresh broker and processor pay one-time costs (the broker's JIT, each client's first
    # request per partition) that a long-running pipeline does not
    count = int(args.rate * (args.fresh_warm_up_s + args.fresh_seconds))
    trades = make_trades(count, args.pairs)
    pairs = trades["pair"].to_pylist()
    rows = trades.drop_columns(["timestamp_ms"]).to_pylist()
    source_kafka = kafka.model_copy(update={"enable_idempotence": idempotent})
    producer = (make_producer(source_kafka) if args.source_linger_ms < 0
                else make_producer(source_kafka, **{"linger.ms": args.source_linger_ms}))
    # The load generator's producer gets ready before the timed run: an idempotent producer
    # holds every message until the broker gave it a producer id, and on a young broker that
    # first request may be refused ("Coordinator load in progress") and retried: the first
    # windows' trades would wait for it (the load generator's start, not the processor).
    warmed = time.perf_counter()
    producer.produce(f"{prefix}warm-up", value=b"warm-up")
    producer.flush(30)
    warm_up_ms = (time.perf_counter() - warmed) * 1000
    began_s = time.time()
    begin = time.monotonic()
    sent = 0
    last_ts = 0
    last_of_pair: dict[str, int] = {}  # each pair's last trade: its event time = its send time
    while sent < count:
        due = min(count, int((time.monotonic() - begin) * args.rate) + 1)
        while sent < due:
            last_ts = int(time.time() * 1000)
            row = rows[sent]
            producer.produce(topics.trades, key=pairs[sent],
                             value=orjson.dumps({"v": 1, **row, "timestamp_ms": last_ts}),
                             partition=partition_for(pairs[sent], PARTITIONS))
            last_of_pair[pairs[sent]] = last_ts
            sent += 1
        producer.poll(0)
        time.sleep(0.001)
    producer.flush(30)
    produce_s = time.monotonic() - begin
    # every window closed by stream time is out after ~1.5 s; each pair's last one closes on
    # idle once the pair is quiet for the idle timeout and the window is over (+ grace)
    time.sleep(max(1.5, (args.idle_timeout_ms + size_ms + grace_ms) / 1000 + 2.0))
    stop_reading.set()
    thread.join()
    reader.close()
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        profiler.wait(30)
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=60)
    for drain in drains:
        drain.join(10)
    live: dict[str, Any] = next((json.loads(line[len("RESULT "):]) for line in child_lines
                                 if line.startswith("RESULT ")), {})
    slow_steps = sum(1 for line in child_lines if "slow step" in line)

    measured_from_ms = (began_s + args.fresh_warm_up_s) * 1000  # windows due from then count
    closable = [(recv, end + grace_ms, made) for recv, end, made in received
                if end + grace_ms <= last_ts]
    closed = [c for c in closable if c[1] >= measured_from_ms]
    warm = np.array([recv - due for recv, due, _ in closable if due < measured_from_ms])
    # each pair's windows not closable by its own stream time: closed on idle
    idle_closed = [(recv, end, max(last_of_pair[pair] + args.idle_timeout_ms, end + grace_ms))
                   for (recv, end, _), pair in zip(received, received_pairs, strict=True)
                   if end + grace_ms > last_of_pair[pair]]
    idle_from_end = np.array([recv - end for recv, end, _ in idle_closed])
    idle_from_due = np.array([recv - due for recv, _, due in idle_closed])
    lat = np.array([recv - due for recv, due, _ in closed])
    to_emit = np.array([made - due for _, due, made in closed])  # trade hop + processing
    to_recv = np.array([recv - made for recv, _, made in closed])  # candle hop to the reader
    windows = len({end for _, end, _ in received})
    by_due = [recv - due for recv, due, _ in sorted(closed, key=lambda c: c[1])]
    half = len(by_due) // 2  # does the latency drift over the run (a processor falling behind)?
    first_half = float(np.percentile(by_due[:half], 50)) if half else float("nan")
    second_half = float(np.percentile(by_due[half:], 50)) if half else float("nan")
    return {"label": label, "sent": sent, "produce_s": produce_s,
            "rate": sent / produce_s, "candles": len(lat), "windows": windows,
            "p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p99": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
            "max": float(lat.max()) if len(lat) else float("nan"),
            "size_ms": size_ms, "grace_ms": grace_ms, "load": os.getloadavg()[0],
            "p50_first_half": first_half, "p50_second_half": second_half,
            "emit_p50": float(np.percentile(to_emit, 50)) if len(lat) else float("nan"),
            "emit_p99": float(np.percentile(to_emit, 99)) if len(lat) else float("nan"),
            "recv_p50": float(np.percentile(to_recv, 50)) if len(lat) else float("nan"),
            "recv_p99": float(np.percentile(to_recv, 99)) if len(lat) else float("nan"),
            "step_p50_ms": live.get("step_p50_ms", float("nan")),
            "step_p99_ms": live.get("step_p99_ms", float("nan")),
            "step_max_ms": live.get("step_max_ms", float("nan")),
            "idle_timeout_ms": args.idle_timeout_ms, "idle_pairs": len(last_of_pair),
            "idle_candles": len(idle_closed),
            "idle_end_p50": _pct(idle_from_end, 50), "idle_end_max": _pct(idle_from_end, 100),
            "idle_due_p50": _pct(idle_from_due, 50), "idle_due_max": _pct(idle_from_due, 100),
            "timings": live.get("timings", {}), "slow_step_logs": slow_steps,
            "warm_up_ms": warm_up_ms, "began_s": began_s, "pinned": pinned,
            "warm_up_s": args.fresh_warm_up_s, "warm_candles": len(warm),
            "warm_p99": _pct(warm, 99), "warm_max": _pct(warm, 100),
            # the worst candles: when their window was due (wall clock, s) and the split
            "worst": [{"due_s": due / 1000, "latency_ms": recv - due, "to_produced_ms": made - due}
                      for recv, due, made in sorted(closed, key=lambda c: c[1] - c[0])[:8]]}


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _idle_line(f: dict[str, Any]) -> str:
    """How fast a quiet pair's last window closed on idle (through its closure record)."""
    bound = f["idle_timeout_ms"] + f["grace_ms"]
    return (f"Idle close of each quiet pair's last window ({f['idle_candles']} candles of "
            f"{f['idle_pairs']} pairs; idle timeout {f['idle_timeout_ms']} ms, grace "
            f"{f['grace_ms']} ms): window end -> received p50 {f['idle_end_p50']:.1f} / max "
            f"{f['idle_end_max']:.1f} ms (bound idle timeout + grace = {bound} ms plus one "
            f"hop: {'PASS' if f['idle_end_max'] <= bound + 100 else 'FAIL'}); due -> received "
            f"p50 {f['idle_due_p50']:.1f} / max {f['idle_due_max']:.1f} ms (due = max(last "
            "trade + idle timeout, window end + grace): the closure record's round trip)")


# --- main -------------------------------------------------------------------------------------
def freshness_line(f: dict[str, Any]) -> str:
    pinned = ("" if f.get("pinned") is None else
              f", processor pinned alone to core {f['pinned']} (taskset)")
    return (f"Freshness at {f['rate']:,.0f} trades/s, 1 s windows, grace 200 ms ({f['label']}"
            f"{pinned}): "
            f"p50 {f['p50']:.1f} ms, p99 {f['p99']:.1f} ms, max {f['max']:.1f} ms over "
            f"{f['candles']:,} candles (target p99 < 50 ms); due -> produced p50 "
            f"{f['emit_p50']:.1f} / p99 {f['emit_p99']:.1f} ms, produced -> received p50 "
            f"{f['recv_p50']:.1f} / p99 {f['recv_p99']:.1f} ms; step() p50 "
            f"{f['step_p50_ms']:.1f} / p99 {f['step_p99_ms']:.1f} / max "
            f"{f['step_max_ms']:.1f} ms; load {f['load']:.1f}; the first "
            f"{f['warm_up_s']:g} s of production not counted ({f['warm_candles']} candles: p99 "
            f"{f['warm_p99']:.1f}, max {f['warm_max']:.1f} ms)")


def print_freshness_split(f: dict[str, Any]) -> None:
    """The processor's own timings of a freshness run: where a held window waited."""
    t = f["timings"]
    if not t:
        print("    (no timings from the processor)")
        return
    for line in step_timing_lines(t, "processor", item="trade", began_s=f["began_s"],
                                  collections_note=f"; 'slow step' logs {f['slow_step_logs']}"):
        print(f"    {line}")
    print(f"    load generator: first message acknowledged {f['warm_up_ms']:.0f} ms after its "
          f"producer started (before the timed run); worst candles (window due, s after "
          f"production began: latency / due -> produced ms): " + ", ".join(
              f"+{w['due_s'] - f['began_s']:.3f}: {w['latency_ms']:.0f} / "
              f"{w['to_produced_ms']:.0f}" for w in f["worst"][:5]), flush=True)


def freshness_variants(args: argparse.Namespace) -> list[FreshnessVariant]:
    return [FRESHNESS_VARIANTS[name] for name in args.freshness_variants.split(",")]


def run_freshness_only(kafka: KafkaSettings, args: argparse.Namespace) -> None:
    """Step 4 alone (the variants asked): for profiling the freshness without the throughput
    runs before it."""
    for variant in freshness_variants(args):
        f = bench_freshness(kafka, args, variant)
        print(freshness_line(f), flush=True)
        print(_idle_line(f), flush=True)
        print_freshness_split(f)
    print(f"Machine load (1/5/15 min) at end: {_load()}")


def run_throughput_only(kafka: KafkaSettings, args: argparse.Namespace) -> None:
    """The candle processor against the bare consume ceiling, alternating `--repeat` times on
    the same topic (each child alone), so both meet the same machine; ratio of the medians."""
    n = args.trades
    limit = max(120.0, n / 5_000)
    prefix = f"bm{uuid.uuid4().hex[:8]}."
    topics = MarketsTopics.prefixed(prefix)
    ensure_topics(kafka, topics.specs(PARTITIONS), TopicSettings())
    trades = make_trades(n, args.pairs)
    produce_trades(kafka, topics.trades, trades, PARTITIONS)
    del trades
    _log(f"setup: produced {n:,} trades")
    braid: list[float] = []
    ceiling: list[float] = []
    cpu_b: list[float] = []  # CPU microseconds per trade, the whole process (all threads)
    cpu_c: list[float] = []
    for i in range(args.repeat):
        c = _braid_child("ceiling", kafka, prefix, n, limit)
        ceiling.append(_rate(c))
        cpu_c.append(c["cpu_s"] / c["consumed"] * 1e6)
        b = _braid_child("candles", kafka, prefix, n, limit,
                         profile=args.profile_live if i == 0 else None)
        braid.append(_rate(b))
        cpu_b.append(b["cpu_s"] / b["consumed"] * 1e6)
        _log(f"round {i + 1}: ceiling {ceiling[-1]:,.0f} trades/s ({cpu_c[-1]:.2f} us CPU per "
             f"trade), Braid candle processor {braid[-1]:,.0f} trades/s ({cpu_b[-1]:.2f} us "
             f"CPU per trade; {b['batches']} batches, {b['produced']:,} candles); ratio "
             f"{braid[-1] / ceiling[-1]:.2f}")
    med_b, med_c = float(np.median(braid)), float(np.median(ceiling))
    print(f"Throughput, {n:,} trades, {args.repeat} alternating rounds: Braid candle processor "
          f"median {med_b:,.0f} trades/s, bare consume + orjson ceiling median {med_c:,.0f} "
          f"trades/s: Braid/ceiling = {med_b / med_c:.2f} (target >= 0.8); rounds "
          + ", ".join(f"{b_ / c_:.2f}" for b_, c_ in zip(braid, ceiling, strict=True))
          + f"; CPU per trade (whole process, every thread) median Braid "
          f"{np.median(cpu_b):.2f} us, ceiling {np.median(cpu_c):.2f} us: ceiling/Braid "
          f"{np.median(cpu_c) / np.median(cpu_b):.2f} (CPU per trade hardly moves with other "
          f"processes' load; wall clock does, and on a busy machine it also favours the "
          f"ceiling, whose librdkafka thread keeps a second thread busy)")
    print(f"Machine load (1/5/15 min) at end: {_load()}")


def run(kafka: KafkaSettings, args: argparse.Namespace) -> None:
    n = args.trades
    limit = max(120.0, n / 5_000)
    print(f"Braid markets benchmark: {n:,} synthetic trades over {args.pairs} pairs, "
          f"{PARTITIONS} partitions, local Apache Kafka at {kafka.bootstrap_servers}")
    print(f"machine load at start: {_load()}")

    if args.freshness_only:
        run_freshness_only(kafka, args)
        return
    if args.throughput_only:
        run_throughput_only(kafka, args)
        return
    quix_python = ensure_quix_venv()
    prefix = f"bm{uuid.uuid4().hex[:8]}."
    topics = MarketsTopics.prefixed(prefix)
    quix_out = f"{prefix}quix_candles"
    ensure_topics(kafka, [*topics.specs(PARTITIONS), _candle_topic_spec(quix_out)],
                  TopicSettings())
    t0 = time.monotonic()
    trades = make_trades(n, args.pairs)
    span_min = (trades["timestamp_ms"][-1].as_py() - trades["timestamp_ms"][0].as_py()) / 60_000
    produce_trades(kafka, topics.trades, trades, PARTITIONS)
    _log(f"setup: produced {n:,} trades ({span_min:,.0f} min of event time) in "
         f"{time.monotonic() - t0:.1f} s")
    del trades

    rows: list[tuple[str, str, str]] = []
    candles = _braid_child("candles", kafka, prefix, n, limit)
    _log(f"candle processor: {_rate(candles):,.0f} trades/s, {candles['produced']:,} candles")
    indicators = _braid_child("indicators", kafka, prefix, candles["produced"], limit)
    _log(f"indicator processor: {_rate(indicators):,.0f} candles/s")
    quix = _run_child([str(quix_python), str(QUIX_APP), "--bootstrap", kafka.bootstrap_servers,
                       "--topic", topics.trades, "--output", quix_out,
                       "--group", f"{prefix}quix", "--expect", str(n),
                       "--session-timeout-ms", str(SESSION_TIMEOUT_MS)], limit * 10 + 120)
    _log(f"quix: {_rate(quix):,.0f} trades/s")
    ceiling = _braid_child("ceiling", kafka, prefix, n, limit)
    _log(f"ceiling: {_rate(ceiling):,.0f} trades/s")
    small = _braid_child("candles", kafka, prefix, min(MEMORY_SMALL, n), limit)
    _log(f"memory run ({small['consumed']:,} trades) done")
    fresh = []
    for variant in freshness_variants(args):
        fresh.append(bench_freshness(kafka, args, variant))
        _log(f"freshness, {variant.label}: p99 {fresh[-1]['p99']:.1f} ms")

    braid = _rate(candles)
    e2e = n / (_span(candles) + _span(indicators))
    ratio_quix = braid / _rate(quix)
    ratio_ceiling = braid / _rate(ceiling)
    mb = 1024.0
    rows = [
        ("Braid candle processor (60 s, grace 5 s)", f"{braid:,.0f} trades/s",
         f"{candles['consumed']:,} trades in {_span(candles):.2f} s -> {candles['produced']:,} "
         f"candles, {candles['batches']} batches"),
        ("Braid indicator processor", f"{_rate(indicators):,.0f} candles/s",
         f"{indicators['consumed']:,} candles in {_span(indicators):.2f} s -> "
         f"{indicators['produced']:,} indicator rows"),
        ("Braid end to end (candles then indicators)", f"{e2e:,.0f} trades/s",
         f"{n:,} trades / ({_span(candles):.2f} + {_span(indicators):.2f}) s"),
        (f"Quix Streams {QUIX_VERSION} (same OHLCV + count)", f"{_rate(quix):,.0f} trades/s",
         f"{quix['consumed']:,} trades in {_span(quix):.2f} s"),
        ("Ceiling: consume(10000) + orjson.loads", f"{_rate(ceiling):,.0f} trades/s",
         f"{ceiling['consumed']:,} trades in {_span(ceiling):.2f} s"),
        ("Ratio Braid / Quix (target >= 5x)", f"{ratio_quix:.1f}x",
         "PASS" if ratio_quix >= 5 else "FAIL"),
        ("Ratio Braid / ceiling (target >= 0.8)", f"{ratio_ceiling:.2f}",
         "PASS" if ratio_ceiling >= 0.8 else "FAIL"),
    ]
    for f in fresh:
        rows.append((f"Freshness, {f['label']}",
                     f"p50 {f['p50']:.1f} / p99 {f['p99']:.1f} / max {f['max']:.1f} ms",
                     f"{f['candles']:,} candles, {f['windows']} window closes, "
                     f"{f['sent']:,} trades at {f['rate']:,.0f}/s; p50 first half of the run "
                     f"{f['p50_first_half']:.1f} ms, second half {f['p50_second_half']:.1f} "
                     f"ms; split: due -> produced by "
                     f"the processor p50 {f['emit_p50']:.1f} / p99 {f['emit_p99']:.1f} ms, "
                     f"produced -> received p50 {f['recv_p50']:.1f} / p99 {f['recv_p99']:.1f} "
                     f"ms; processor step() p50 "
                     f"{f['step_p50_ms']:.1f} / p99 {f['step_p99_ms']:.1f} / max "
                     f"{f['step_max_ms']:.1f} ms; load {f['load']:.1f}; target p99 < 50 ms: "
                     f"{'PASS' if f['p99'] < 50 else 'FAIL'}"))
    rows += [
        (f"Peak RSS, candle child, {small['consumed']:,} trades",
         f"{small['maxrss_kb'] / mb:,.0f} MiB",
         f"{small['rss_before_consuming_kb'] / mb:,.0f} MiB before consuming"),
        (f"Peak RSS, candle child, {candles['consumed']:,} trades",
         f"{candles['maxrss_kb'] / mb:,.0f} MiB",
         f"{candles['rss_before_consuming_kb'] / mb:,.0f} MiB before consuming"),
        ("Peak RSS, ceiling child / Quix child",
         f"{ceiling['maxrss_kb'] / mb:,.0f} / {quix['maxrss_kb'] / mb:,.0f} MiB",
         f"{ceiling['consumed']:,} / {quix['consumed']:,} trades"),
    ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print()
    print(f"{'measure':<{width}}  {'value':>{vwidth}}  detail")
    print("-" * (width + vwidth + 60))
    for name, value, detail in rows:
        print(f"{name:<{width}}  {value:>{vwidth}}  {detail}")
    print()
    f0 = fresh[0]
    source = ("Braid's defaults, linger.ms 5" if args.source_linger_ms < 0
              else f"linger.ms {args.source_linger_ms}")
    print("Freshness setup: candle processor live with 1 s tumbling windows and grace 200 ms "
          f"({f0['windows']} window closes x {args.pairs} pairs per run); latency = candle "
          "receive wall time - (window_end + grace). A pair's window closes when that pair's "
          "stream time passes end + grace, i.e. on its next trade after that. Trades are produced "
          f"by make_producer ({source}); "
          "the reader (in the bench process) uses fetch.wait.max.ms 5 and its hop is included.")
    print("Freshness settings changed from the candle processor's defaults (MarketsSettings), "
          "and why: windows 1 s (default 60s), so a 30 s run closes 31 windows per pair and the "
          "p99 rests on 240 candles instead of 8; grace 200 ms (default 5s): latency is counted "
          "from window_end + grace, so the grace moves when a window is due, not how long its "
          "candle takes after that; idle timeout "
          f"{args.idle_timeout_ms} ms (default 10s), so the idle-close check ends within the "
          "run. Everything else is the processor's default (batch size, poll timeout, "
          "fetch.wait.max.ms, idempotent producers).")
    print("Throughput = messages / (last handled - first consumed), the first batch's processing "
          "included, the group join excluded; Braid's span ends after its outputs are flushed "
          "and offsets committed. Each measured child ran alone (sequentially). Peak RSS = "
          "VmHWM of the child process.")
    print(f"machine load at end: {_load()}")
    print()
    print("=== SUMMARY (quote as is) ===")
    print(f"Braid candle processor, 1 process, {n:,} trades / {args.pairs} pairs, 60 s windows: "
          f"{braid:,.0f} trades/s")
    print(f"Braid indicator processor: {_rate(indicators):,.0f} candles/s over "
          f"{indicators['consumed']:,} candles; end to end trades -> candles -> indicators "
          f"(back to back): {e2e:,.0f} trades/s")
    print(f"Quix Streams {QUIX_VERSION}, same windows: {_rate(quix):,.0f} trades/s; "
          f"Braid/Quix = {ratio_quix:.1f}x (target >= 5x)")
    print(f"Bare consume + orjson.loads ceiling: {_rate(ceiling):,.0f} trades/s; "
          f"Braid/ceiling = {ratio_ceiling:.2f} (target >= 0.8)")
    for f in fresh:
        print(freshness_line(f))
        print(_idle_line(f))
        print_freshness_split(f)
    print(f"Peak RSS of the candle processor: {small['maxrss_kb'] / mb:,.0f} MiB at "
          f"{small['consumed']:,} trades, {candles['maxrss_kb'] / mb:,.0f} MiB at "
          f"{candles['consumed']:,} trades")
    print(f"Machine load (1/5/15 min) at end: {_load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=None,
                        help="trades to produce (default 1,000,000; 100,000 with --quick)")
    parser.add_argument("--pairs", type=int, default=8, choices=range(1, len(DEFAULT_PAIRS) + 1),
                        metavar="1-8", help="number of pairs (default 8)")
    parser.add_argument("--rate", type=float, default=5_000.0,
                        help="freshness: trades/s produced live (default 5000)")
    parser.add_argument("--fresh-warm-up-s", type=float, default=3.0,
                        help="freshness: seconds of production before the measured ones, "
                        "printed apart (a fresh broker's and processor's first windows)")
    parser.add_argument("--fresh-seconds", type=float, default=None,
                        help="freshness: seconds of live production per run (default 30; 10 "
                             "with --quick)")
    parser.add_argument("--source-linger-ms", type=int, default=-1,
                        help="freshness: linger.ms of the bench's trade producer (default: "
                             "Braid's make_producer setting)")
    parser.add_argument("--idle-timeout-ms", type=int, default=2_000,
                        help="freshness: the live candle processor's idle timeout (default "
                             "2000); each pair's last window closes on idle after it")
    parser.add_argument("--freshness-variants", default="defaults,no-idempotence",
                        help="freshness runs, comma-separated, in order: "
                             f"{', '.join(FRESHNESS_VARIANTS)} (default: "
                             "defaults,no-idempotence)")
    parser.add_argument("--pin", action="store_true",
                        help="freshness: the live processor alone on the last core; the load "
                             "generator, the reader and the broker on the others (taskset)")
    parser.add_argument("--profile-live", metavar="DIR", default=None,
                        help="freshness: record each live processor with py-spy (raw "
                             "collapsed stacks, live-<variant>.txt in DIR)")
    parser.add_argument("--throughput-only", action="store_true",
                        help="only the candle processor against the consume ceiling, "
                             "alternating --repeat times (no Quix, indicators or freshness)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="--throughput-only: alternating rounds (default 3)")
    parser.add_argument("--freshness-only", action="store_true",
                        help="only step 4, the freshness runs (no throughput, Quix or memory)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 100k trades, 10 s of freshness (explicit values win)")
    # child-process plumbing (not for direct use)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--limit-s", type=float, default=600.0, help=argparse.SUPPRESS)
    parser.add_argument("--no-idempotence", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-gc-freeze", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _quiet_logs()
        CHILDREN[args.child](args)
        return
    if args.trades is None:
        args.trades = 100_000 if args.quick else 1_000_000
    if args.fresh_seconds is None:
        args.fresh_seconds = 10.0 if args.quick else 30.0
    _quiet_logs()
    with tempfile.TemporaryDirectory(prefix="bench-markets-") as tmp:
        settings = broker_settings(Path(tmp), die_with_parent=True)
        stack.up(settings, create_topics=False)
        try:
            kafka = settings.local_kafka_settings()
            kafka.session_timeout_ms = SESSION_TIMEOUT_MS
            run(kafka, args)
        finally:
            stack.down(settings)


if __name__ == "__main__":
    main()

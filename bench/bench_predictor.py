"""Benchmark of live predictions: the stream predictor and the HTTP API.

    .venv/bin/python bench/bench_predictor.py [--pairs 8] [--seconds 60] [--http-rate 200]
        [--http-requests 10000] [--trees 100] [--online-store redis|sqlite]

Starts an Apache Kafka broker and a Redis of its own (the stack's services, free ports), a Feast
repo with 1-second candle views (Redis online store, or SQLite with `--online-store sqlite`;
`candles_1s`, `indicators_1s` in `markets_direction_v1`, TTL 2 s), a SQLite MLflow
registry holding an XGBoost champion over the service's 30 columns (`--trees` trees of depth
4), and, as separate processes through the `braid` command, the online sink, the markets
predictor and the API.

- **stream**: every second, for each of `--pairs` pairs, the candle that just closed goes to
  `candles` and its indicator row to `technical_indicators` (as the candle and indicator
  processors publish them); latency = the indicator row's `produce()` -> the prediction's
  arrival at a consumer of `predictions.markets` (this includes the online sink writing the
  candle's features, which the predictor waits for). p50/p99 after a warm-up of 5 s, and the
  stages: row produced -> the sink's write-log record of the candle (its CreateTime: produced
  right after the write) -> the prediction's CreateTime (the predictor's `produce()`) ->
  received.
- **stream, predictor alone**: the same rows, but each indicator row goes to a second predictor
  (own topics) only once `get_online_features` shows the sink has written its candle: the
  predictor's own latency (two Kafka hops, one Feast read, the model), without the race.
- **http**: while the stream goes on, `GET /predict/{pair}` then `POST /predict` at
  `--http-rate` requests/s (paced, one keep-alive connection, pairs in turn),
  `--http-requests` each: p50/p99, the status codes and the failures (`bench/http_load.py`: a
  request caught by the server closing the idle connection is sent again on a fresh one and
  counted apart).
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import socket
import statistics
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
from confluent_kafka import Consumer, KafkaError, TopicPartition  # noqa: E402
from feast import FeatureStore  # noqa: E402

from bench.http_load import LoadResult, Request, paced_load  # noqa: E402
from features.indicators import INDICATOR_COLUMNS  # noqa: E402
from features.model_contract import FEATURE_SERVICES, MODEL_NAMES  # noqa: E402
from features.schemas.candle import record_key  # noqa: E402
from infra import stack  # noqa: E402
from infra.testing import broker_settings  # noqa: E402
from serving.feast_definitions import definitions  # noqa: E402
from serving.online_features import FeatureServiceReader  # noqa: E402
from serving.settings import FeastSettings  # noqa: E402
from serving.store import feast_redis_connection, write_repo_config  # noqa: E402
from streaming.partitioning import partition_for  # noqa: E402
from streaming.runtime.clients import consume_available, make_producer  # noqa: E402
from streaming.settings import KafkaSettings  # noqa: E402
from streaming.topics import (  # noqa: E402
    CANDLES,
    CHECKPOINTS,
    DEAD_LETTER,
    INDICATORS,
    MARKET_PREDICTIONS,
    ONLINE_WRITES,
    SENSOR_PREDICTIONS,
    TopicSpec,
    ensure_topics,
)

SECOND = 1_000
PARTITIONS = 8


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def feast_repo(folder: Path, redis_url: str | None) -> FeatureStore:
    """A Feast repo whose markets service holds 1-second candles (Redis online store at
    `redis_url`, else SQLite)."""
    online = (f"online_store:\n  type: redis\n  connection_string: "
              f"'{feast_redis_connection(redis_url)}'\n" if redis_url else None)
    write_repo_config(folder, f"bench{uuid.uuid4().hex[:8]}", online)
    store = FeatureStore(repo_path=str(folder))
    entities, views, services = definitions(
        FeastSettings(offline_root=str(folder / "offline"), durations=["1s"]))
    store.apply([*entities, *views, *services])
    return store


def register_champion(folder: Path, columns: list[str], trees: int) -> str:
    import mlflow
    import mlflow.xgboost
    import pandas as pd
    import xgboost as xgb
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("bench", artifact_location=(folder / "artifacts").as_uri())
    mlflow.set_experiment("bench")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(2_000, len(columns))), columns=columns)
    label = (frame.iloc[:, 5] + rng.normal(size=len(frame)) > 0).astype(int)
    model = xgb.XGBClassifier(n_estimators=trees, max_depth=4, n_jobs=1).fit(frame, label)
    with mlflow.start_run():
        info = mlflow.xgboost.log_model(
            model, name="model", registered_model_name=MODEL_NAMES["markets"],
            signature=infer_signature(frame, model.predict_proba(frame)[:, 1]),
            pip_requirements=["xgboost"])
    MlflowClient().set_registered_model_alias(MODEL_NAMES["markets"], "champion",
                                              str(info.registered_model_version))
    return uri


class Stream:
    """Publishes one candle and one indicator row per pair each second."""

    def __init__(self, kafka: KafkaSettings, prefix: str, pairs: list[str],
                 relay: tuple[Any, str] | None = None) -> None:
        self.producer = make_producer(kafka)
        self.prefix = prefix
        self.pairs = pairs
        # (feature reader, prefix): once the sink has written a second's candles, publish the
        # indicator rows again to `prefix`'s predictor (its latency without the race)
        self.relay = relay
        self.sent: dict[tuple[str, int], float] = {}
        self.rng = np.random.default_rng(1)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _publish(self, end: int) -> None:
        rows = []
        for pair in self.pairs:
            start = end - SECOND
            base = {"pair": pair, "window_ms": SECOND, "window_start_ms": start,
                    "window_end_ms": end}
            p = [float(x) for x in 100 + self.rng.random(4)]
            candle = {**base, "open": p[0], "high": max(p) + 1, "low": min(p) - 1,
                      "close": p[1], "volume": 3.0, "vwap": p[2], "trade_count": 7}
            row = {**base, "close": p[1],
                   **{c: float(self.rng.normal()) for c in INDICATOR_COLUMNS}}
            key = record_key(pair, SECOND, start)
            partition = partition_for(pair, PARTITIONS)
            self.producer.produce(self.prefix + CANDLES, key=key, value=orjson.dumps(candle),
                                  partition=partition)
            self.producer.produce(self.prefix + INDICATORS, key=key, value=orjson.dumps(row),
                                  partition=partition)
            rows.append((key, row, partition))
            if self.relay is None:
                self.sent[(pair, end)] = time.time()
            self.producer.poll(0)
        if self.relay is not None:
            reader, prefix = self.relay
            self.producer.flush(5)
            deadline = time.time() + 2
            while not (reader.read(self.pairs).event_ms == end).all():
                if time.time() > deadline:
                    return
                time.sleep(0.001)
            for (key, row, partition), pair in zip(rows, self.pairs, strict=True):
                self.producer.produce(prefix + INDICATORS, key=key, value=orjson.dumps(row),
                                      partition=partition)
                self.sent[(pair, end)] = time.time()
            self.producer.poll(0)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            end = int(now) * SECOND  # the 1-second candle that just closed
            self._publish(end)
            self._stop.wait(int(now) + 1 - time.time())

    def start(self) -> Stream:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.producer.flush(10)


class Arrivals:
    """Arrival time of every prediction on predictions.markets, and its Kafka CreateTime (the
    predictor's `produce()`)."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.consumer = Consumer({**kafka.client_config(), "group.id": f"b{uuid.uuid4().hex}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 5})
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self.seen: dict[tuple[str, int], tuple[float, dict[str, object]]] = {}
        self.created: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # not consume(100, 0.05): it would wait for 100 messages, adding up to 50 ms
            for message in consume_available(self.consumer, 100, 0.05):
                if message.error() is None:
                    record = orjson.loads(message.value() or b"{}")
                    key = (str(record["pair"]), int(record["window_end_ms"]))
                    if key not in self.seen:
                        self.seen[key] = (time.time(), record)
                        self.created[key] = message.timestamp()[1] / 1000
        self.consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)


def sink_written(kafka: KafkaSettings, topic: str) -> dict[tuple[str, int], float]:
    """When the online sink had written both of a candle's rows (the later CreateTime of its
    two write-log records, produced right after each write), per (pair, window_end_ms)."""
    consumer = Consumer({**kafka.client_config(), "group.id": f"b{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    written: dict[tuple[str, int], float] = {}
    ended: set[int] = set()
    deadline = time.time() + 60
    while len(ended) < PARTITIONS and time.time() < deadline:
        for message in consumer.consume(10_000, 0.5):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"reading {topic}: {error}")
                ended.add(int(message.partition() or 0))
                continue
            _, pair, event_ms = (message.key() or b"").decode().split("|")
            slot = (pair, int(event_ms))
            written[slot] = max(written.get(slot, 0.0), message.timestamp()[1] / 1000)
    consumer.close()
    return written


@dataclass
class StreamFigures:
    latencies: list[float]  # ms, indicator row produced -> prediction received
    sent: int
    ages: list[float]  # the records' feature_age_ms
    to_sink: list[float]  # ms, row produced -> the sink had written the candle (write log)
    sink_to_predictor: list[float]  # ms, written -> the predictor's produce() of the prediction
    out_hop: list[float]  # ms, the predictor's produce() -> prediction received


def measure_stream(kafka: KafkaSettings, prefix: str, stream: Stream, seconds: int, work: Path,
                   *, stop: bool = True, write_log: str | None = None) -> StreamFigures:
    """Run `stream` until predictions flow, then `seconds` more after a 5 s warm-up: the
    latencies (ms) of the rows sent meanwhile and where they went (`write_log`: the sink's)."""
    arrivals = Arrivals(kafka, prefix + MARKET_PREDICTIONS)
    stream.start()
    deadline = time.time() + 120
    while not arrivals.seen:  # the processors have joined their groups
        if time.time() > deadline:
            raise RuntimeError(f"no prediction after 120 s: see {work}/*.log")
        time.sleep(0.2)
    warm = time.time() + 5
    time.sleep(5 + seconds)
    if stop:
        stream.stop()
    time.sleep(1)
    arrivals.stop()
    measured = {k: v for k, v in stream.sent.items() if warm <= v <= warm + seconds}
    got = [k for k in measured if k in arrivals.seen]
    written = sink_written(kafka, write_log) if write_log else {}
    ms = 1000.0
    return StreamFigures(
        [(arrivals.seen[k][0] - measured[k]) * ms for k in got], len(measured),
        [float(str(r["feature_age_ms"])) for _, r in arrivals.seen.values()
         if r.get("feature_age_ms") is not None],
        [(written[k] - measured[k]) * ms for k in got if k in written],
        [(arrivals.created[k] - written[k]) * ms for k in got if k in written],
        [(arrivals.seen[k][0] - arrivals.created[k]) * ms for k in got])


def braid(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    exe = str(Path(sys.executable).with_name("braid"))
    handle = log.open("wb")
    return subprocess.Popen([exe, *args], env=env, stdout=handle, stderr=handle,
                            start_new_session=True)


def http_phase(port: int, method: str, pairs: list[str], rate: float, requests: int
               ) -> LoadResult:
    """`requests` paced requests at `rate`/s over one keep-alive connection, pairs in turn
    (`bench.http_load`: failures counted, not fatal)."""
    def request(k: int) -> Request:
        pair = pairs[k % len(pairs)]
        if method == "GET":
            return ("GET", f"/predict/{pair}", None, {})
        return ("POST", "/predict", orjson.dumps({"pair": pair}),
                {"Content-Type": "application/json"})

    return paced_load("127.0.0.1", port, rate, requests, request)


def wait_http(port: int, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            response = connection.getresponse()
            # caught up: the API has read the predictions topic to its end once
            if response.status == 200 and orjson.loads(response.read())["caught_up"]:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the API did not answer /health (caught up)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=60, help="stream measurement length")
    parser.add_argument("--http-rate", type=float, default=200)
    parser.add_argument("--http-requests", type=int, default=10_000,
                        help="requests per route (GET, then POST)")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--online-store", choices=("redis", "sqlite"), default="redis",
                        help="Feast online store: Redis (the stack's, as deployed) or SQLite")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-predictor-"))
    redis = args.online_store == "redis"
    settings = broker_settings(work / "kafka", die_with_parent=True,
                               services=["broker", "redis"] if redis else ["broker"],
                               redis_port=free_port())
    stack.up(settings, create_topics=False)
    children: list[subprocess.Popen[bytes]] = []
    ok = False
    try:
        kafka = settings.local_kafka_settings()
        prefix = f"bp{uuid.uuid4().hex[:6]}."
        keyed = (CANDLES, INDICATORS, MARKET_PREDICTIONS)
        ensure_topics(kafka, [TopicSpec(prefix + n, PARTITIONS) for n in keyed]
                      + [TopicSpec(prefix + DEAD_LETTER, 1),
                         TopicSpec(prefix + SENSOR_PREDICTIONS, 1),
                         TopicSpec(prefix + CHECKPOINTS, 1, cleanup_policy="compact")])
        store = feast_repo(work / "repo", settings.redis_url if redis else None)
        columns = FeatureServiceReader(store, FEATURE_SERVICES["markets"], "pair").columns
        tracking = register_champion(work, columns, args.trees)
        api_port = free_port()
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
               "MLFLOW_TRACKING_URI": tracking, "BRAID_TOPIC_MARKET_PARTITIONS": str(PARTITIONS),
               "BRAID_TOPIC_SENSOR_PARTITIONS": "1", "BRAID_LOG_LEVEL": "WARNING",
               "BRAID_API_PORT": str(api_port)}
        env.pop("BRAID_API_TOKEN", None)
        common = ["--repo", str(work / "repo"), "--topic-prefix", prefix]
        children.append(braid(["online-sink", "--pipeline", "markets", "--batch-size", "1000",
                               *common], env, work / "sink.log"))
        children.append(braid(["markets", "predictor", *common], env, work / "predictor.log"))
        pairs = [f"P{i}/USD" for i in range(args.pairs)]
        print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)")
        race = measure_stream(kafka, prefix, Stream(kafka, prefix, pairs), args.seconds, work,
                              write_log=prefix + ONLINE_WRITES)
        # the predictor alone: a second predictor on its own topics gets each indicator row
        # once the sink has written the candle's features
        alone = f"bq{uuid.uuid4().hex[:6]}."
        ensure_topics(kafka, [TopicSpec(alone + n, PARTITIONS)
                              for n in (INDICATORS, MARKET_PREDICTIONS)]
                      + [TopicSpec(alone + DEAD_LETTER, 1),
                         TopicSpec(alone + CHECKPOINTS, 1, cleanup_policy="compact")])
        children.append(braid(["markets", "predictor", "--repo", str(work / "repo"),
                               "--topic-prefix", alone], env, work / "predictor-alone.log"))
        reader = FeatureServiceReader(store, FEATURE_SERVICES["markets"], "pair")
        relay = Stream(kafka, prefix, pairs, relay=(reader, alone))
        isolated = measure_stream(kafka, alone, relay, args.seconds // 2, work, stop=False)
        children.append(braid(["api", *common], env, work / "api.log"))
        wait_http(api_port)
        get = http_phase(api_port, "GET", pairs, args.http_rate, args.http_requests)
        post = http_phase(api_port, "POST", pairs, args.http_rate, args.http_requests)
        relay.stop()
        print(f"stream: {args.pairs} pairs x 1-second candles, model {args.trees} trees, "
              f"{args.online_store} online store (target p99 < 50 ms)")
        for name, figures in (
                ("indicator row produced -> prediction received (with the sink race)", race),
                ("the same once the sink has written the candle (predictor alone)", isolated)):
            lat = figures.latencies
            print(f"  {name}: {len(lat)}/{figures.sent} rows predicted, "
                  f"p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, "
                  f"max {max(lat, default=float('nan')):.1f} ms; median feature_age_ms "
                  f"{statistics.median(figures.ages) if figures.ages else float('nan'):.0f}")
            for stage, values in (("row produced -> sink wrote the candle", figures.to_sink),
                                  ("sink wrote -> predictor produced", figures.sink_to_predictor),
                                  ("predictor produced -> received", figures.out_hop)):
                if values:
                    print(f"    {stage}: p50 {pct(values, 50):.1f} ms, "
                          f"p99 {pct(values, 99):.1f} ms")
        for name, load in (("GET /predict/{pair}", get), ("POST /predict", post)):
            lat = load.latencies_ms or [float("nan")]
            print(f"http {name} at {load.achieved_rps:.0f} req/s (asked {args.http_rate:.0f}), "
                  f"{load.requests:,} requests over one keep-alive connection: p50 "
                  f"{pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms, max {max(lat):.2f} ms "
                  f"(target p99 < 20 ms); statuses {dict(sorted(load.statuses.items()))}; "
                  f"{load.failures} failed (target 0), {load.reopened} sent again on a fresh "
                  f"connection after the server closed the idle one"
                  + (f"; first failure: {load.first_failure}" if load.failures else ""))
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        ok = True
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        stack.down(settings)
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"failed: logs kept in {work}", file=sys.stderr)


if __name__ == "__main__":
    main()

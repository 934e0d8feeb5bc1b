"""The sensors part of `braid demo`: an XGBoost alert model trained, registered and promoted in
MLflow, then the window and join processors (child processes, the join serving the registry's
champion) over simulated readings ending now, and the alerts they raised.

The readings are published as real traffic arrives, only faster (`SPEEDUP` x real time), not
sorted (`arrival_order`): each client's device uploads its readings in bursts every few seconds,
so SX, SY and SZ of many clients interleave, and a few readings come late (some within the
5 s grace, some beyond it: those are dead-lettered). Whatever the order, the join answers every
event with its vector as of its event time and corrects an answer when a late reading changes
it, so once the stream settles the demo checks that every served vector is the training row of
its event (`training.sensors_baseline.training_rows` over the same events, in the order they were
published).

The simulator labels every reading (`incident`), so the demo also prints how the live alerts
line up with the incidents: that is the model judged on readings it never saw (another seed).
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from confluent_kafka import KafkaError, Message
from rich.console import Console
from rich.table import Table

from features.sensors.schemas import VECTOR_FIELDS
from features.sensors.simulator import SimulatorConfig, simulate
from features.sensors.window_math import DEFAULT_GRACE_MS
from features.windows import NO_STREAM_TIME, stream_time_before
from streaming.partitioning import partition_for
from streaming.pipelines.sensors import (
    SensorTopics,
    final_predictions,
    read_predictions,
    read_readings,
    reading_message,
)
from streaming.runtime.clients import make_producer
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, SensorSettings, TopicSettings
from streaming.topics import ensure_topics

MINUTE_MS = 60_000
PARTITIONS = 4  # a demo's few hundred clients; deployments use BRAID_TOPIC_SENSOR_PARTITIONS
SPEEDUP = 60.0  # event time per wall-clock time while publishing
BURST_MS = (2_000, 10_000)  # a client's device uploads every 2..10 s (event time)
LATE_SHARE = 0.02  # readings held back further, 0..12 s: within the 5 s grace or beyond it
LATE_MS = 12_000
RESENDS = 3  # times a reading the broker refused is sent again

Spawn = Callable[[list[str], str], subprocess.Popen[bytes]]


@dataclass(frozen=True)
class SensorsDemo:
    train_clients: int  # simulated clients of the training history
    train_minutes: int
    live_clients: int  # simulated clients streamed through the processors
    live_minutes: int  # event-time span of the streamed readings, ending now
    seed: int


def train_champion(demo: SensorsDemo, console: Console) -> str:
    """Train the alert model on simulated history; returns the line the demo prints."""
    from cli.progress import training_status
    from cli.verdict import verdict
    from training.sensors_model import train_sensors

    with training_status("training the sensors alert model", console):
        result = train_sensors("simulator", clients=demo.train_clients,
                               minutes=demo.train_minutes, seed=demo.seed)
    line = (f"MLflow run {result.run_id}: {result.model_name} version {result.version} "
            f"-> {result.alias}")
    console.print(line)
    console.print(verdict(result, ("never_alert", "logistic"), why=(
        "the simulator's incidents are nearly linear in the five binned fields, which suits "
        "the logistic; on the real SKAB pump experiments the same training scored ROC AUC "
        "0.916 against the logistic's 0.897 and never-alert's 0.5, training/README.md")))
    return line


def stream_readings(demo: SensorsDemo, kafka: KafkaSettings, prefix: str, spawn: Spawn,
                    console: Console) -> tuple[SensorTopics, pa.Table,
                                               list[subprocess.Popen[bytes]]]:
    """Start the window and join processors and publish the live clients' readings; returns
    the topics, the published events (with their labels) and the children."""
    topics = SensorTopics.prefixed(prefix)
    ensure_topics(kafka, topics.specs(PARTITIONS), TopicSettings())
    common = ["--topic-prefix", prefix, "--partitions", str(PARTITIONS)]
    children = [
        spawn(["sensors", "windows", *common], "demo-sensor-windows.log"),
        # no --model: the join loads the registry's champion and follows the alias
        spawn(["sensors", "join", *common], "demo-sensor-join.log"),
    ]
    now = int(datetime.now(UTC).timestamp() * 1000)
    span = demo.live_minutes * MINUTE_MS
    events = simulate(SimulatorConfig(clients=demo.live_clients, start_ms=now - span,
                                      duration_ms=span, seed=demo.seed + 1,
                                      incidents_per_hour=1.0, client_prefix="demo-"))
    arrival = arrival_order(events, demo.seed)
    events = events.take(np.argsort(arrival, kind="stable"))  # the order they are published in
    arrival = np.sort(arrival, kind="stable")
    with console.status(f"publishing {demo.live_minutes} minutes of readings at {SPEEDUP:.0f}x"):
        resent = publish_as_they_arrive(kafka, topics, events, arrival)
    behind = out_of_order(events)
    again = f" ({resent:,} sent again after the broker refused them)" if resent else ""
    console.print(f"published {events.num_rows:,}{again} SX, SY, SZ readings of "
                  f"{demo.live_clients} clients "
                  f"({demo.live_minutes} minutes ending now, at {SPEEDUP:.0f}x real time, as "
                  f"traffic arrives: per-client bursts, sensors interleaved, {behind:,} readings "
                  f"out of order in their client's topic) to {topics.of('SZ')}, ...")
    return topics, events, children


def out_of_order(events: pa.Table) -> int:
    """Readings (in row order) older than one of their client's before them in their topic."""
    keys = np.unique(np.char.add(np.asarray(events["sensor"].to_pylist(), dtype=str),
                                 np.asarray(events["client"].to_pylist(), dtype=str)),
                     return_inverse=True)[1].astype(np.int64)
    ts = events["timestamp_ms"].to_numpy()
    before = stream_time_before(keys, ts, np.full(int(keys.max(initial=-1)) + 1,
                                                  NO_STREAM_TIME, dtype=np.int64))
    return int((ts < before).sum())


def arrival_order(events: pa.Table, seed: int) -> np.ndarray:
    """When each reading reaches Kafka (event-time ms): its client's next upload (a burst every
    2..10 s, per client), and for `LATE_SHARE` of readings 0..12 s later still."""
    rng = np.random.default_rng(seed)
    clients, code = np.unique(np.asarray(events["client"].to_pylist(), dtype=object),
                              return_inverse=True)
    every = rng.integers(*BURST_MS, size=len(clients))[code]
    phase = rng.integers(0, BURST_MS[1], size=len(clients))[code]
    ts = events["timestamp_ms"].to_numpy()
    upload = ts + (phase - ts) % every  # the first upload at or after the reading
    late = rng.random(len(ts)) < LATE_SHARE
    return upload + np.where(late, rng.integers(0, LATE_MS, size=len(ts)), 0)


def publish_as_they_arrive(kafka: KafkaSettings, topics: SensorTopics, events: pa.Table,
                           arrival: np.ndarray) -> int:
    """Produce `events` in row order, each when its `arrival` comes at `SPEEDUP` x real time.
    A reading the broker refused is sent again, up to `RESENDS` times (it then lies later in its
    topic than planned: the check reads the topics back); returns how many were sent again."""
    producer = make_producer(kafka)
    columns = [events[c].to_pylist() for c in ("sensor", "client", "timestamp_ms", "value")]
    refused: list[tuple[int, KafkaError]] = []

    def send(i: int) -> None:
        sensor, client, ts, value = (column[i] for column in columns)

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                refused.append((i, error))

        producer.produce(topics.of(sensor), key=client,
                         value=reading_message(client, ts, value, sensor),
                         partition=partition_for(client, PARTITIONS), on_delivery=delivered)
        producer.poll(0)

    if not events.num_rows:
        return 0
    first, started = int(arrival[0]), time.monotonic()
    for i, at in enumerate(arrival.tolist()):
        due = started + (at - first) / 1000 / SPEEDUP
        if due > time.monotonic():
            producer.flush(due - time.monotonic())  # deliver what is due, then wait
            time.sleep(max(0.0, due - time.monotonic()))
        send(i)
    resent, attempts = 0, 1
    while True:
        if producer.flush(60):
            raise RuntimeError("sensor readings were not all acknowledged in 60 s")
        if not refused:
            return resent
        if attempts > RESENDS:
            raise RuntimeError(f"{len(refused)} sensor readings were refused {attempts} times, "
                               f"the last time: {refused[0][1]}")
        again = sorted(i for i, _ in refused)
        refused.clear()
        for i in again:
            send(i)
        resent += len(again)
        attempts += 1


def check_served_vectors(kafka: KafkaSettings, topics: SensorTopics, events: pa.Table,
                         console: Console) -> bool:
    """Every event's final prediction against its training row, built from the readings as
    the topics hold them (their log order, which a reading sent again changes), after checking
    that they hold exactly the `events` published: prints the outcome; True when every served
    vector is its row and no event lacks one."""
    from training.sensors_baseline import training_rows

    logged = read_readings(kafka, topics)
    identity = ("sensor", "client", "timestamp_ms", "value")
    published = Counter(zip(*(events[c].to_pylist() for c in identity), strict=True))
    held = Counter(zip(*(logged[c].to_pylist() for c in identity), strict=True))
    if held != published:
        console.print(f"[red]the topics hold {logged.num_rows:,} readings, not the "
                      f"{events.num_rows:,} published: missing {list(published - held)[:3]}, "
                      f"not published {list(held - published)[:3]}")
        return False
    predictions = read_predictions(kafka, topics.predictions)
    served = {k: p["vector"] for k, p in final_predictions(predictions).items()}
    rows = training_rows(logged, grace_ms=DEFAULT_GRACE_MS, partitions=PARTITIONS,
                         max_lateness_ms=SensorSettings().max_lateness_ms)
    trained = {(c, t, g): v.tolist() for c, t, g, v in zip(
        rows.clients, rows.timestamps_ms.tolist(), rows.triggers, rows.vectors, strict=True)}
    wrong = [k for k in trained if served.get(k) != trained[k]]
    extra = [k for k in served if k not in trained]
    corrections = predictions.num_rows - len(served)
    if wrong or extra:
        # (event, served vector or None, training row or None): what differs, to investigate
        examples = [(k, served.get(k), trained.get(k)) for k in (wrong + extra)[:5]]
        console.print(f"[red]{len(wrong):,} of {len(trained):,} events were not served their "
                      f"training row, {len(extra):,} served events have none; "
                      f"{VECTOR_FIELDS} (event, served, trained): {examples}")
        clients = {k[0] for k, _, _ in examples}
        letters = [(m["processor"], m["topic"], m["offset"], m["value"], m["reason"])
                   for _, _, _, v in read_topic(kafka, topics.dead_letter) if v is not None
                   for m in [orjson.loads(v)] if m.get("key") in clients]
        console.print(f"dead letters of {sorted(clients)}: {letters[:10]}")
        return False
    console.print(f"every served vector equals its training row: {len(trained):,} events "
                  f"(SX, SY and SZ; {corrections:,} predictions were corrections or replays)")
    return True


def show_alerts(kafka: KafkaSettings, topics: SensorTopics, events: pa.Table,
                console: Console) -> int:
    """Print the alerts against the readings' labels; returns the number of predictions."""
    # each event's final prediction (a correction or a replay comes later in the topic)
    latest = final_predictions(read_predictions(kafka, topics.predictions))
    labels: dict[tuple[str, int, str], bool] = {}
    for sensor, client, ts, incident in zip(*(events[c].to_pylist() for c in (
            "sensor", "client", "timestamp_ms", "incident")), strict=True):
        labels[(client, ts, sensor)] = labels.get((client, ts, sensor), False) or incident
    alerts = [p for p in latest.values() if p["alert"]]
    true_alerts = sum(labels.get((p["client"], p["timestamp_ms"], p["trigger"]), False)
                      for p in alerts)
    in_incident = [p for k, p in latest.items() if labels.get(k, False)]
    caught = sum(p["alert"] for p in in_incident)
    versions = sorted({p["model_version"] for p in latest.values()})
    console.print(f"{len(latest):,} predictions on {topics.predictions} (model {versions}): "
                  f"{len(alerts):,} alerts; {true_alerts:,} of them during a labelled incident; "
                  f"{caught:,} of the {len(in_incident):,} predictions made during an incident "
                  "were alerts")
    table = Table(title="latest alert per client (probability of an incident)")
    for column in ("client", "event time", "trigger", "probability", "incident (label)",
                   "model"):
        table.add_column(column)
    last_alert: dict[str, dict[str, Any]] = {}
    for p in sorted(alerts, key=lambda p: p["timestamp_ms"]):
        last_alert[p["client"]] = p
    for client, p in sorted(last_alert.items())[:12]:
        when = datetime.fromtimestamp(p["timestamp_ms"] / 1000, UTC)
        table.add_row(client, f"{when:%H:%M:%S}", p["trigger"], f"{p['probability']:.4f}",
                      "yes" if labels.get((client, p["timestamp_ms"], p["trigger"]), False)
                      else "no", p["model_version"])
    console.print(table)
    if not latest:
        console.print("[yellow]no sensor prediction: see var/log/demo-sensor-*.log")
    return len(latest)

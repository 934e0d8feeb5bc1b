"""`braid sensors ...`: the sensors pipeline's jobs (simulate, windows, join, archive, backfill,
train-baseline, replay-skab), each with `--help`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli import inputs
from features.sensors.window_math import DEFAULT_GRACE_MS
from features.windows import parse_duration_ms
from streaming.pipelines.sensors import SensorTopics
from streaming.settings import EventTimeSettings, KafkaSettings, SensorSettings, TopicSettings
from streaming.topics import ensure_topics

if TYPE_CHECKING:
    from features.sensors.model import AlertModel

app = typer.Typer(help="Sensors pipeline: SX, SY, SZ -> FA, FI, FD -> join -> predictions.",
                  no_args_is_help=True)

PREFIX = typer.Option("", help="Prefix for every topic name (isolates a run on a shared broker).")
PARTITIONS = typer.Option(None, help="Partitions of the sensor topics. "
                                     "[env BRAID_TOPIC_SENSOR_PARTITIONS, default 100]", min=1)
OUTPUT = typer.Option("", help="Write events to this Parquet file instead of Kafka.",
                      callback=inputs.writable_file)
SKEW = typer.Option("", help="Dead-letter a reading stamped further ahead of its Kafka timestamp. "
                             "[env BRAID_MAX_EVENT_TIME_SKEW, default 1h]",
                    callback=inputs.duration)
EDGES = typer.Option("", help="Bin edges JSON (default: the configured edges).",
                     callback=inputs.existing_file)
GRACE = typer.Option(f"{DEFAULT_GRACE_MS}ms", help="Grace for out-of-order SZ readings (the "
                                                   "stream's and the backfill's lateness rule).",
                     callback=inputs.grace)
MAX_LATENESS = typer.Option("", help="A reading this far or further behind its topic-partition's "
                                     "stream time is late, whatever its client's own: bounds "
                                     "what is held for a client one of whose inputs stopped; "
                                     "the same value for windows, join and backfill. "
                                     "[env BRAID_SENSORS_MAX_LATENESS, default 2h]",
                            callback=inputs.duration)


def _topics(prefix: str, partitions: int | None = None) -> tuple[SensorTopics, int]:
    topics = SensorTopics.prefixed(prefix) if prefix else SensorTopics()
    count = partitions or TopicSettings().sensor_partitions
    ensure_topics(KafkaSettings(), topics.specs(count), TopicSettings())
    return topics, count


@app.command()
def simulate(
    clients: int = typer.Option(1_000, help="Number of simulated clients.", min=1),
    minutes: int = typer.Option(60, help="Simulated event-time span in minutes.", min=1),
    seed: int = typer.Option(0, help="Random seed (same seed, same events)."),
    disorder: str = typer.Option("0s", help="Max arrival delay (out-of-order input), e.g. 2s.",
                                 callback=inputs.grace),
    output: str = OUTPUT,
    partitions: int = PARTITIONS,
    topic_prefix: str = PREFIX,
) -> None:
    """Simulate clients' SX, SY, SZ readings with labelled incidents; produce them to Kafka."""
    import pyarrow.parquet as pq

    from features.sensors.simulator import SimulatorConfig, simulate
    from streaming.pipelines.sensors import produce_events

    disorder_ms = inputs.duration_or_zero_ms(disorder)
    events = simulate(SimulatorConfig(clients=clients, duration_ms=minutes * 60_000, seed=seed,
                                      disorder_ms=disorder_ms))
    if output:
        pq.write_table(events, output)
        typer.echo(f"wrote {events.num_rows} events to {output}")
        return
    topics, count = _topics(topic_prefix, partitions)
    typer.echo(f"produced {produce_events(KafkaSettings(), topics, events, count)} events")


@app.command("replay-skab")
def replay_skab(
    data_dir: str = typer.Option("", help="SKAB folder (default: ../shared/data/sensors/skab "
                                          "next to the repository).",
                                 callback=inputs.existing_dir),
    output: str = OUTPUT,
    partitions: int = PARTITIONS,
    topic_prefix: str = PREFIX,
) -> None:
    """Replay the real SKAB pump series: each experiment file is a client."""
    import pyarrow.parquet as pq

    from features.sensors.skab import DEFAULT_DIR, skab_events
    from streaming.pipelines.sensors import produce_events

    events = skab_events(Path(data_dir) if data_dir else DEFAULT_DIR)
    if output:
        pq.write_table(events, output)
        typer.echo(f"wrote {events.num_rows} events to {output}")
        return
    topics, count = _topics(topic_prefix, partitions)
    typer.echo(f"produced {produce_events(KafkaSettings(), topics, events, count)} events")


@app.command()
def windows(
    grace: str = GRACE,
    edges: str = EDGES,
    idle_timeout: str = typer.Option("", hidden=True, help="Ignored (features go out at once, "
                                                          "corrected within grace); kept so "
                                                          "older scripts still run."),
    group: str = typer.Option("braid-sensor-windows", help="Consumer group (share to scale out)."),
    batch_size: int = typer.Option(10_000, help="Messages per micro-batch.", min=1),
    max_event_time_skew: str = SKEW,
    max_lateness: str = MAX_LATENESS,
    partitions: int = PARTITIONS,
    topic_prefix: str = PREFIX,
) -> None:
    """Consume SZ, emit each reading's window features to FA, FI, FD at once (and a correction
    when a reading within grace lands behind it) until SIGTERM."""
    from features.sensors.binning import DEFAULT_EDGES, BinEdges
    from streaming.pipelines.sensors import window_processor

    if idle_timeout:
        typer.echo("note: --idle-timeout is ignored: features go out at once", err=True)
    topics, _ = _topics(topic_prefix, partitions)
    window_processor(KafkaSettings(), grace_ms=_ms(grace),
                     edges=BinEdges.load(Path(edges)) if edges else DEFAULT_EDGES, topics=topics,
                     group=group, batch_size=batch_size,
                     max_event_time_skew_ms=_skew_ms(max_event_time_skew),
                     max_lateness_ms=_max_lateness_ms(max_lateness)).run()


@app.command()
def join(
    model: str = typer.Option(
        "", help="A JSON model from train-baseline, or `builtin` (the hand-set logistic "
                 "baseline). Default: the registry's champion (see --model-uri).",
        callback=lambda value: value if value in ("", "builtin") else inputs.existing_file(value)),
    model_uri: str = typer.Option(
        "", help="MLflow model URI (default models:/braid-sensors-alert@<BRAID_MODEL_ALIAS>); "
                 "an alias is polled and swapped live."),
    threshold: float = typer.Option(0.5, help="Alert when probability >= threshold.",
                                    callback=inputs.probability),
    grace: str = typer.Option(f"{DEFAULT_GRACE_MS}ms", help="Grace of every input, per client "
                                                            "and topic (at least the windows' "
                                                            "--grace): an input further behind "
                                                            "is dead-lettered.",
                              callback=inputs.grace),
    group: str = typer.Option("braid-sensor-join", help="Consumer group (share to scale out)."),
    batch_size: int = typer.Option(10_000, help="Messages per micro-batch.", min=1),
    max_event_time_skew: str = SKEW,
    max_lateness: str = MAX_LATENESS,
    partitions: int = PARTITIONS,
    topic_prefix: str = PREFIX,
) -> None:
    """Consume SX, SY, FA, FI, FD; emit a prediction for every SX, SY and SZ event (its vector
    as of its event time) to predictions.sensors, and a correction when a late input within
    grace changes one, until SIGTERM."""
    from features.sensors.model import DEFAULT_MODEL, LogisticAlertModel
    from streaming.pipelines.sensors import join_processor

    if model and model_uri:
        raise typer.BadParameter("give --model or --model-uri, not both",
                                 param_hint="'--model' / '--model-uri'")
    alert_model: AlertModel
    if model == "builtin":
        alert_model = DEFAULT_MODEL
    elif model:
        alert_model = LogisticAlertModel.load(Path(model))
    else:
        alert_model = _registry_model(model_uri)
    topics, _ = _topics(topic_prefix, partitions)
    join_processor(KafkaSettings(), model=alert_model, threshold=threshold,
                   grace_ms=_ms(grace), topics=topics, group=group, batch_size=batch_size,
                   max_event_time_skew_ms=_skew_ms(max_event_time_skew),
                   max_lateness_ms=_max_lateness_ms(max_lateness)).run()


def _registry_model(model_uri: str) -> AlertModel:
    import mlflow

    from features.model_contract import MODEL_NAMES
    from serving.models import ModelRefused, registry_alert_model
    from serving.settings import MlflowSettings, ModelServingSettings

    serving = ModelServingSettings()
    mlflow.set_tracking_uri(MlflowSettings().resolved_tracking_uri())
    uri = model_uri or f"models:/{MODEL_NAMES['sensors']}@{serving.alias}"
    try:
        return registry_alert_model(uri, poll_s=serving.poll_interval_s)
    except ModelRefused as error:
        typer.echo(f"error: {error} (train and register one, or pass --model model.json)",
                   err=True)
        raise typer.Exit(2) from error


@app.command()
def archive(
    root: str = typer.Option(..., help="Archive root: gs://bucket/prefix or a local folder."),
    max_rows: int = typer.Option(50_000, help="Flush a topic-partition at this many messages.",
                                 min=1),
    max_age: float = typer.Option(30.0, help="... or once its oldest message waited this (s).",
                                  callback=inputs.positive),
    group: str = typer.Option("braid-sensor-archive", help="Consumer group."),
    partitions: int = PARTITIONS,
    topic_prefix: str = PREFIX,
) -> None:
    """Copy SX, SY, SZ, FA, FI, FD to Parquet (partitioned by topic and date) until SIGTERM."""
    from streaming.pipelines.sensors import archive_processor

    topics, _ = _topics(topic_prefix, partitions)
    archive_processor(KafkaSettings(), root, topics=topics, max_rows=max_rows,
                      max_age_s=max_age, group=group).run()


@app.command()
def backfill(
    archive_root: str = typer.Option(..., "--input", help="Archive root (gs:// or a folder).",
                                     callback=inputs.existing_dir),
    output: str = typer.Option(..., help="Offline store Delta table (gs:// or a folder)."),
    start: str = typer.Option(None, help="First date (YYYY-MM-DD, UTC), inclusive.",
                              callback=inputs.utc_day),
    end: str = typer.Option(None, help="Day after the last date (YYYY-MM-DD, UTC), exclusive.",
                            callback=inputs.utc_day),
    grace: str = GRACE,
    edges: str = EDGES,
    learn_edges: str = typer.Option("", help="Also learn bin edges from the recomputed "
                                             "features and save them to this JSON file.",
                                    callback=inputs.writable_file),
    edges_version: str = typer.Option("", help="Version of the learned edges."),
    topic_prefix: str = PREFIX,
    max_event_time_skew: str = SKEW,
    max_lateness: str = MAX_LATENESS,
) -> None:
    """Recompute FA, FI, FD from the archive with Spark and write the offline store."""
    from batch.sensors_backfill import run_backfill

    inputs.ordered(start, end, ("--start", "--end"))
    version = run_backfill(archive_root, output, start=start, end=end, grace_ms=_ms(grace),
                           edges_path=edges or None, topic_prefix=topic_prefix,
                           learn_edges_to=learn_edges or None,
                           learned_version=edges_version or None,
                           max_event_time_skew_ms=_skew_ms(max_event_time_skew),
                           max_lateness_ms=_max_lateness_ms(max_lateness))
    typer.echo(f"offline store {output} at version {version}")


@app.command("train-baseline")
def train_baseline(
    output: str = typer.Option("sensors_baseline.json", help="Where to write the model.",
                               callback=inputs.writable_file),
    clients: int = typer.Option(300, help="Simulated clients of history.", min=1),
    minutes: int = typer.Option(240, help="Simulated minutes of history.", min=1),
    seed: int = typer.Option(0, help="Simulation seed."),
    version: str = typer.Option(None, help="Model version (default: derived from the data)."),
) -> None:
    """Fit the transparent logistic baseline on simulated history; store params + version."""
    from training.sensors_baseline import save_model, train_on_simulation

    model, report = train_on_simulation(clients=clients, minutes=minutes, seed=seed,
                                        version=version)
    save_model(Path(output), model, report)
    typer.echo(f"model {model.version} -> {output}: {report}")


def _skew_ms(text: str) -> int:
    """The option's value, or the setting's when empty."""
    return parse_duration_ms(text or EventTimeSettings().max_event_time_skew)


def _max_lateness_ms(text: str) -> int:
    """The option's value, or the setting's when empty."""
    return parse_duration_ms(text or SensorSettings().max_lateness)


def _ms(text: str) -> int:
    return inputs.duration_or_zero_ms(text)

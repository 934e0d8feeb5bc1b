"""`braid demo`: both pipelines end to end on the embedded stack, with no data and no network.

As a deployment would run it, in order:
1. the local stack (`braid up`: Apache Kafka, Redis, MLflow, ...) and `feast apply` of a
   repository whose online store is the stack's Redis (SQLite only when Redis is not among
   `BRAID_STACK_SERVICES`, and the demo says so);
2. the speed layer as child processes (candles, indicators, the online-store sink), fed
   `--days` of seeded synthetic history ending now, published to the trades topic;
3. the batch layer: Spark (delta-spark) backfills the same trades, read from that Kafka topic,
   into the offline Delta tables; Feast materializes;
4. online features of a pair read back through the `markets_direction_v1` feature service, and
   the online/offline consistency report (every online row against the batch recomputation);
5. an XGBoost model trained on the point-in-time training set, logged and registered in MLflow,
   promoted to `champion` when it beats the one before;
6. the predictor (child process) serving the champion while `--live-seconds` of live trades
   flow: live predictions on `predictions.markets`, printed;
7. the sensors pipeline: an XGBoost alert model trained on simulated history, registered and
   promoted in MLflow; the window and join processors (child processes, the join serving the
   registry's champion) over simulated readings of other clients ending now, published as
   traffic arrives (bursts, sensors interleaved, some late); the alerts, printed against the
   simulator's incident labels, and the check that every served vector is its event's training
   row (`cli/demo_sensors.py`).
Processes stop at the end; the stack stays up (`braid status`, `braid down`). Logs: var/log/
(Spark's driver: var/log/demo-spark.log). Every step that takes more than a few seconds shows
its progress (a spinner with what it waits for, the backfill's stage and Spark task bar, Feast's
materialization bars, the training run's steps), and each model's result is one sentence
against its baselines.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import typer
from rich.console import Console
from rich.table import Table

from cli import inputs
from cli.demo_sensors import (
    SensorsDemo,
    check_served_vectors,
    show_alerts,
    stream_readings,
    train_champion,
)
from cli.demo_trades import history_trades, publish_live_trades
from cli.progress import training_status
from cli.verdict import verdict
from infra import stack
from infra.processes import parent_death_hook
from infra.settings import StackSettings
from streaming.pipelines.markets import MarketsTopics, produce_trades, read_indicators
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.sources.synthetic import DEFAULT_PAIRS
from streaming.topics import ensure_topics

console = Console(width=120)
SHOWN_INDICATORS = ("rsi_14", "macd", "macd_signal", "adx_14", "bb_upper", "mfi_14", "obv_50")


def demo(
    days: float = typer.Option(2.0, help="Days of synthetic history, ending now.",
                               callback=inputs.positive),
    pairs: int = typer.Option(8, min=1, max=len(DEFAULT_PAIRS), help="Number of pairs."),
    seed: int = typer.Option(7, help="Seed of the synthetic generator."),
    live_seconds: float = typer.Option(75.0, help="Seconds of live trades at the end (1-minute "
                                                  "candles: more than 60 s to close one).",
                                       callback=inputs.positive),
    idle_timeout: str = typer.Option("3s", help="Close quiet pairs' windows after this.",
                                     callback=inputs.duration),
    sensor_clients: int = typer.Option(200, min=1, help="Sensors: clients streamed live."),
    sensor_minutes: int = typer.Option(40, min=11, help="Sensors: minutes of readings streamed "
                                                        "(ending now; windows are 10 minutes)."),
    sensor_train_clients: int = typer.Option(100, min=10, help="Sensors: simulated clients of "
                                                              "the training history."),
    sensor_train_minutes: int = typer.Option(240, min=60, help="Sensors: minutes of training "
                                                               "history."),
) -> None:
    """Run the markets and sensors pipelines end to end on embedded defaults and show what
    they computed."""
    from serving.feast_definitions import definitions
    from serving.store import open_store

    settings = StackSettings()
    console.rule("1. the local stack and the Feast repository")
    with console.status(f"starting the local stack: {', '.join(settings.enabled_services())} "
                        "(a minute or two the first time)"):
        stack.up(settings)
    kafka = settings.local_kafka_settings()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"http://{settings.host}:{settings.mlflow_port}")
    _quiet_libraries(Path(settings.state_dir) / "log")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    prefix = f"demo.{now:%Y%m%d%H%M}."
    repo = _demo_repo(Path(settings.state_dir) / "demo" / f"{now:%Y%m%d%H%M}", settings,
                      f"braid_demo_{now:%Y%m%d%H%M}")
    store = open_store("local", repo)
    entities, views, services = definitions()
    store.apply([*entities, *views, *services])
    console.print(f"feast apply in {repo}: {len(views)} feature views, "
                  f"{', '.join(s.name for s in services)}; online store: "
                  f"{_online_store_name(store)}")
    topics = MarketsTopics.prefixed(prefix)
    partitions = TopicSettings().market_partitions
    ensure_topics(kafka, topics.specs(partitions), TopicSettings())
    console.print(f"topic prefix: {prefix}")
    names = list(DEFAULT_PAIRS)[:pairs]
    log_dir = Path(settings.state_dir) / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    try:
        console.rule("2. the speed layer: candles, indicators, online sink")
        prefix_args = ["--topic-prefix", prefix]
        children += [
            # the history ends at the demo's start, a minute or two before it is processed:
            # live enough for its last windows to close on idle (through closure records in
            # the log, which the backfill below applies too); the live trades carry on
            _spawn(["markets", "candles", "-d", "1m", "-d", "1h", "--idle-timeout",
                    idle_timeout, "--live-lag", "10m", *prefix_args], kafka,
                   log_dir / "demo-candles.log"),
            _spawn(["markets", "indicators", *prefix_args], kafka,
                   log_dir / "demo-indicators.log"),
            _spawn(["online-sink", "--pipeline", "markets", "--repo", str(repo),
                    *prefix_args], kafka,
                   log_dir / "demo-online-sink.log"),
        ]
        history = history_trades(days, names, seed, int(now.timestamp() * 1000))
        start = now - timedelta(days=days)
        with console.status(f"publishing {history.num_rows:,} trades of history"):
            produce_trades(kafka, topics.trades, history, partitions)
        console.print(f"published {history.num_rows:,} trades of {len(names)} pairs, "
                      f"{start:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC")
        _wait_for_output(kafka, topics.indicators)
        time.sleep(3)  # the online sink's last batch

        console.rule("3. the batch layer: Spark backfills the trades topic into Delta")
        versions = _backfill(kafka, topics.trades, start, now, names)
        console.print("Delta tables written, at versions: "
                      + ", ".join(f"{table} v{version}" for table, version in versions.items()))
        market_views = [v.name for v in views if v.name.startswith(("candles_", "indicators_"))]
        console.print(f"Feast materializes {', '.join(market_views)} into "
                      f"{_online_store_name(store)}:")
        store.materialize_incremental(end_date=datetime.now(UTC), feature_views=market_views)

        console.rule("4. online features and the online/offline consistency report")
        _show_online(store, names[0])
        _show_consistency(store, start, now + timedelta(minutes=1))

        console.rule("5. training: XGBoost on a point-in-time training set, MLflow, promotion")
        _train(store, start, now, names)

        console.rule(f"6. live: the predictor serves the champion; {live_seconds:.0f} s of trades")
        children.append(_spawn(["markets", "predictor", "--repo", str(repo), *prefix_args], kafka,
                               log_dir / "demo-predictor.log"))
        with console.status("live trades...") as status:
            publish_live_trades(
                kafka, topics.trades, partitions, history, live_seconds, seed=seed,
                on_tick=lambda s: status.update(f"live trades: {s:.0f}/{live_seconds:.0f} s"))
        _show_predictions(kafka, f"{prefix}predictions.markets")
        _show_indicators(kafka, topics.indicators)

        console.rule("7. sensors: XGBoost alert model in MLflow; the join serves the champion")
        sensors = SensorsDemo(sensor_train_clients, sensor_train_minutes, sensor_clients,
                              sensor_minutes, seed)
        train_champion(sensors, console)
        sensor_topics, events, sensor_children = stream_readings(
            sensors, kafka, prefix,
            lambda args, name: _spawn(args, kafka, log_dir / name), console)
        children += sensor_children
        _wait_for_output(kafka, sensor_topics.predictions)
        show_alerts(kafka, sensor_topics, events, console)
        if not check_served_vectors(kafka, sensor_topics, events, console):
            raise typer.Exit(code=1)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(30)
    console.print("\nThe stack is still up: `braid status`, `braid down`. "
                  f"MLflow UI: http://{settings.host}:{settings.mlflow_port}")


def _quiet_libraries(log_dir: Path) -> None:
    """Keep libraries' chatter off the demo's output: MLflow's INFO lines and artifact download
    bars (the demo prints each run's link itself), Spark's driver JVM (its own log file)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # in case it already was
    os.environ.setdefault("BRAID_SPARK_LOG", str((log_dir / "demo-spark.log").resolve()))


def _online_store_name(store: object) -> str:
    from feast import FeatureStore

    assert isinstance(store, FeatureStore)
    online = store.config.online_store
    if "redis" in str(online.type).lower():
        return f"Redis ({getattr(online, 'connection_string', '')})"
    return f"SQLite ({getattr(online, 'path', '')})"


def _demo_repo(folder: Path, settings: StackSettings, project: str) -> Path:
    """A Feast repository of this run only (project `project`, registry and offline tables under
    `folder`; online store the stack's Redis, or SQLite under `folder` when the stack runs no
    Redis), so a second demo never reads the first one's rows."""
    from serving.store import write_repo_config

    online = None
    if "redis" in settings.enabled_services():
        online = ("online_store:\n  type: serving.redis_online_store.BraidRedisOnlineStore\n"
                  f"  connection_string: '{settings.host}:{settings.redis_port}'\n")
    else:
        console.print("[yellow]Redis is not among BRAID_STACK_SERVICES: the online store is "
                      "SQLite")
    repo = write_repo_config(folder / "feature_repo", project, online)
    # read by the Feast definitions here and in the children: their sources and the backfill
    os.environ["BRAID_FEAST_OFFLINE_ROOT"] = str((folder / "offline").resolve())
    return repo.resolve()


def _spawn(args: list[str], kafka: KafkaSettings, log: Path) -> subprocess.Popen[bytes]:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    with log.open("ab") as out:
        # the processors stop with the demo, also when it is killed
        return subprocess.Popen([sys.executable, "-m", "cli.main", *args],
                                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=parent_death_hook())


def _wait_for_output(kafka: KafkaSettings, topic: str, quiet_s: float = 6.0,
                     timeout_s: float = 600.0) -> int:
    """Wait until `topic` stops growing; returns its message count."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout_s
    with console.status(f"processing: waiting for {topic} to settle"):
        while time.monotonic() < deadline:
            count = len(read_topic(kafka, topic, settle_s=0.3))
            if count != last:
                last, since = count, time.monotonic()
            elif count > 0 and time.monotonic() - since >= quiet_s:
                return count
            time.sleep(1)
    console.print(f"[red]{topic} did not settle in {timeout_s:.0f} s (see var/log/demo-*.log)")
    raise typer.Exit(code=1)


def _backfill(kafka: KafkaSettings, topic: str, start: datetime, end: datetime,
              pairs: list[str]) -> dict[str, int]:
    """The trades backfill over the whole topic (delta-spark), into Feast's offline root."""
    from batch.backfill import run_backfill
    from batch.backfill_trades import job_args, parse_config
    from batch.spark_session import spark_session
    from serving.settings import FeastSettings

    config = parse_config(job_args(
        kafka_bootstrap=kafka.bootstrap_servers, kafka_topic=topic, start=start.date(),
        end=end.date() + timedelta(days=1), pairs=pairs, output=FeastSettings().table_uri(""),
        durations=["1m", "1h"],
    ))
    with console.status("starting Spark (local[2]; its driver's log: "
                        f"{os.environ.get('BRAID_SPARK_LOG', 'var/log/spark-driver.log')})"):
        spark = spark_session(master="local[2]", shuffle_partitions=4)
    try:
        summary = run_backfill(spark, config)
    finally:
        spark.stop()
    console.print(f"backfill: {summary.trades_read:,} trades -> {summary.candles_written:,} "
                  f"candles, {summary.indicator_rows_written:,} indicator rows in "
                  f"{summary.seconds:.0f} s")
    return dict(summary.table_versions)


def _show_online(store: object, pair: str) -> None:
    from feast import FeatureStore

    assert isinstance(store, FeatureStore)
    service = store.get_feature_service("markets_direction_v1")
    online = store.get_online_features(features=service, entity_rows=[{"pair": pair}],
                                       full_feature_names=True).to_dict()
    table = Table(title=f"online features of {pair} (feature service markets_direction_v1)")
    table.add_column("feature")
    table.add_column("value", justify="right")
    for name in ("candles_1m__window_end_ms", "candles_1m__close", "candles_1m__volume",
                 *(f"indicators_1m__{c}" for c in SHOWN_INDICATORS)):
        table.add_row(name, _fmt(online.get(name, [None])[0]))
    console.print(table)


def _show_consistency(store: object, start: datetime, end: datetime) -> None:
    from feast import FeatureStore

    from serving.consistency import consistency_report
    from serving.consistency_output import text_table

    assert isinstance(store, FeatureStore)
    report = consistency_report(store, start, end, "markets")
    console.print(text_table(report))
    console.print(f"match rate online vs offline: {report.match_rate:.4%}")


def _train(store: object, start: datetime, end: datetime, pairs: list[str]) -> None:
    from feast import FeatureStore

    from training.markets_model import train_markets

    assert isinstance(store, FeatureStore)
    with training_status("training the markets model", console):
        result = train_markets(start, end, pairs, store=store)
    console.print(f"MLflow run {result.run_id}: {result.model_name} version {result.version} "
                  f"-> {result.alias} ({os.environ['MLFLOW_TRACKING_URI']}/#/models/"
                  f"{result.model_name})")
    console.print(verdict(result, ("persistence", "majority"), why=(
        "the demo's history is a seeded random walk: there is nothing to learn, so a score "
        "near 0.5 is the honest result and any gap to a baseline is chance; on real Kraken "
        "minutes of XBT/USD and ETH/USD, 2018-05-08..12, the same training scored ROC AUC 0.542 "
        "against persistence's 0.503 yet lost to the majority class on log loss, "
        "training/README.md")))


def _show_predictions(kafka: KafkaSettings, topic: str) -> None:
    rows = [v for _, _, _, v in read_topic(kafka, topic, settle_s=3.0) if v is not None]
    import orjson

    table = Table(title=f"live predictions ({topic}): P(next 1-minute candle closes higher)")
    for column in ("pair", "candle end", "prediction", "model", "feature age ms"):
        table.add_column(column)
    for row in (orjson.loads(v) for v in rows[-16:]):
        end = datetime.fromtimestamp(row["window_end_ms"] / 1000, UTC)
        table.add_row(row["pair"], f"{end:%H:%M:%S}", f"{row['prediction']:.4f}",
                      f"{row['model_name']} v{row['model_version']}",
                      str(row["feature_age_ms"]))
    console.print(table)
    if not rows:
        console.print("[yellow]no live prediction yet: see var/log/demo-predictor.log")


def _show_indicators(kafka: KafkaSettings, topic: str) -> None:
    indicators = read_indicators(kafka, topic)
    one_minute = indicators.filter(pc.equal(indicators["window_ms"], 60_000))
    latest = {r["pair"]: r for r in one_minute.to_pylist()}  # topic order: the last wins
    table = Table(title="latest 1-minute indicators per pair (every one warmed up: "
                        "the stream carries on from the history)")
    for column in ("pair", "window start", "close", *SHOWN_INDICATORS):
        table.add_column(column)
    for pair, row in sorted(latest.items()):
        start = datetime.fromtimestamp(int(row["window_start_ms"]) / 1000, UTC)
        table.add_row(pair, f"{start:%m-%d %H:%M}", _fmt(row["close"]),
                      *(_fmt(row.get(k)) for k in SHOWN_INDICATORS))
    console.print(table)


def _fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, int | float):
        return f"{float(value):,.4f}"
    return str(value)

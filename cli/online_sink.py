"""`braid online-sink`: final candles, indicators and sensor features into the online store."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from cli import inputs
from serving.settings import FEATURE_REPO
from serving.store import ServingError, open_store
from streaming.settings import KafkaSettings, TopicSettings
from streaming.sinks.online_store import online_sink_processor
from streaming.topics import (
    CANDLES,
    CHECKPOINTS,
    DEAD_LETTER,
    INDICATORS,
    ONLINE_WRITES,
    SENSOR_FEATURES,
    catalogue,
    ensure_topics,
)

PIPELINES = ("markets", "sensors")


def sink_kinds(pipelines: list[str], prefix: str = "") -> dict[str, str]:
    """Input topic -> sink kind for the chosen pipelines."""
    kinds: dict[str, str] = {}
    if "markets" in pipelines:
        kinds |= {prefix + CANDLES: "candles", prefix + INDICATORS: "indicators"}
    if "sensors" in pipelines:
        kinds |= {prefix + name: "sensor_feature" for name in SENSOR_FEATURES}
        kinds |= {prefix + name: f"sensor_reading:{name}" for name in ("SX", "SY")}
    return kinds


def online_sink(
    pipeline: Annotated[list[str] | None, typer.Option(
        "--pipeline", "-p", help="markets and/or sensors (repeatable; default: both).")] = None,
    profile: Annotated[str, typer.Option(
        help="Feast profile: local (SQLite), redis, gcp.")] = "local",
    repo: Annotated[Path, typer.Option(help="The Feast repository.",
                                       callback=inputs.existing_dir)] = FEATURE_REPO,
    group: Annotated[str, typer.Option(help="Consumer group (its own; share it to scale out).")
                     ] = "braid-online-sink",
    batch_size: Annotated[int, typer.Option(help="Messages per micro-batch.", min=1)] = 10_000,
    topic_prefix: Annotated[str, typer.Option(help="Prefix of every topic name.")] = "",
    write_log: Annotated[bool, typer.Option(
        help="Also produce every written row to the online_writes topic (what "
             "`braid consistency --history` compares).")] = True,
) -> None:
    """Consume candles, technical_indicators and the sensor topics; write every final row to
    Feast's online store (newest per key, never older over newer) until SIGTERM. Run
    `feast apply` in feature_repo/ first."""
    pipelines = pipeline or list(PIPELINES)
    unknown = sorted(set(pipelines) - set(PIPELINES))
    if unknown:
        raise typer.BadParameter(f"unknown pipeline {unknown[0]} (markets or sensors)",
                                 param_hint="'--pipeline'")
    try:
        store = open_store(profile, repo)
        if not store.list_feature_views():
            raise ServingError(f"no feature views registered in {repo}: run `feast apply` there")
    except ServingError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    kinds = sink_kinds(pipelines, topic_prefix)
    topics = TopicSettings()
    specs = [s for s in catalogue(topics) if topic_prefix + s.name in kinds
             or s.name in (DEAD_LETTER, CHECKPOINTS) or (write_log and s.name == ONLINE_WRITES)]
    kafka = KafkaSettings()
    ensure_topics(kafka, [replace(s, name=topic_prefix + s.name) for s in specs], topics)
    online_sink_processor(kafka, store, kinds, group=group, batch_size=batch_size,
                          dead_letter_topic=topic_prefix + DEAD_LETTER,
                          checkpoint_topic=topic_prefix + CHECKPOINTS,
                          log_topic=topic_prefix + ONLINE_WRITES if write_log else None).run()

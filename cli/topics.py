"""`braid topics create`: the topic catalogue on the configured broker (what `braid up` does for
its own broker), for a compose stack, a Kubernetes Job or any Kafka-protocol cluster."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import catalogue, ensure_topics

app = typer.Typer(help="Braid's topics on the broker of KAFKA_BOOTSTRAP_SERVERS.",
                  no_args_is_help=True)


@app.command()
def create(
    topic_prefix: Annotated[str, typer.Option(help="Prefix of every topic name.")] = "",
) -> None:
    """Create every missing topic of the catalogue (partitions, replication and configs from
    BRAID_TOPIC_*); an existing topic is checked (partition count), never changed. Idempotent:
    run it at every start."""
    settings = TopicSettings()
    specs = [replace(spec, name=topic_prefix + spec.name) for spec in catalogue(settings)]
    created = ensure_topics(KafkaSettings(), specs, settings)
    typer.echo(f"{len(specs)} topics ready, {len(created)} created"
               + (f": {', '.join(created)}" if created else ""))

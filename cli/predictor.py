"""`braid markets predictor`: indicator rows -> predictions.markets with the champion model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import structlog
import typer

from cli import inputs
from features.model_contract import FEATURE_SERVICES, MODEL_NAMES
from features.windows import parse_duration_ms
from serving.settings import FEATURE_REPO, MlflowSettings, ModelServingSettings
from streaming.settings import KafkaSettings, PredictorSettings, TopicSettings
from streaming.topics import ensure_topics

log = structlog.get_logger(__name__)


def predictor(
    model_uri: Annotated[str, typer.Option(
        help="Model to serve (default models:/braid-markets-direction@<BRAID_MODEL_ALIAS>); "
             "an alias is polled and swapped live.")] = "",
    profile: Annotated[str | None, typer.Option(
        help="Feast profile: local (SQLite), redis, gcp. [env BRAID_PREDICTOR_FEAST_PROFILE]")
    ] = None,
    repo: Annotated[Path, typer.Option(help="The Feast repository.",
                                       callback=inputs.existing_dir)] = FEATURE_REPO,
    feature_wait: Annotated[str | None, typer.Option(
        help="How long a row waits for its candle's online features. "
             "[env BRAID_PREDICTOR_FEATURE_WAIT, default 2s]", callback=inputs.duration)] = None,
    group: Annotated[str, typer.Option(help="Consumer group (share it to scale out).")] = (
        "braid-markets-predictor"),
    topic_prefix: Annotated[str, typer.Option(help="Prefix of every topic name.")] = "",
) -> None:
    """Consume final rows of `technical_indicators`, read the pair's features online through
    the `markets_direction_v1` feature service, predict with the champion and publish to
    `predictions.markets` until SIGTERM. Rows without fresh, complete features get no
    prediction and a counted reason."""
    import mlflow  # heavy imports here: `braid --help` stays fast

    from serving.models import ModelWatcher
    from serving.online_features import FeatureServiceReader
    from serving.store import ServingError, open_store
    from streaming.pipelines.markets_predictor import PredictorTopics, predictor_processor

    settings = PredictorSettings()
    serving = ModelServingSettings()
    mlflow.set_tracking_uri(MlflowSettings().resolved_tracking_uri())
    uri = model_uri or f"models:/{MODEL_NAMES['markets']}@{serving.alias}"
    try:
        store = open_store(profile or settings.feast_profile, repo)
        reader = FeatureServiceReader(store, FEATURE_SERVICES["markets"], "pair")
        window_ms = reader.window_ms
    except (ServingError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    except Exception as error:  # Feast: the service is not registered (feast apply)
        typer.echo(f"error: cannot read feature service {FEATURE_SERVICES['markets']} from "
                   f"{repo}: {error} (run `feast apply` there)", err=True)
        raise typer.Exit(2) from error
    watcher = ModelWatcher(uri, reader.columns, reader.name,
                           poll_s=serving.poll_interval_s).start()
    if watcher.current is None:
        reason = next(iter(watcher.refused.values()), f"no model to serve from {uri}")
        typer.echo(f"error: {reason}", err=True)
        watcher.stop()
        raise typer.Exit(2)
    topics = PredictorTopics.prefixed(topic_prefix) if topic_prefix else PredictorTopics()
    topic_settings = TopicSettings()
    kafka = KafkaSettings()
    ensure_topics(kafka, topics.specs(topic_settings.market_partitions), topic_settings)
    processor, shared = predictor_processor(
        kafka, reader, watcher, window_ms=window_ms, topics=topics, group=group,
        feature_wait_ms=parse_duration_ms(feature_wait or settings.feature_wait),
        retry_interval_ms=parse_duration_ms(settings.retry_interval),
        poll_timeout_s=parse_duration_ms(settings.poll_timeout) / 1000)
    try:
        processor.run()
    finally:
        watcher.stop()
        shared.skipped.flush()
        log.info("predictor stopped", counts=dict(shared.counts))

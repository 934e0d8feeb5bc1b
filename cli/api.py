"""`braid api`: the prediction API (FastAPI under uvicorn)."""

from __future__ import annotations

import gc
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from cli import inputs
from features.model_contract import FEATURE_SERVICES, MODEL_NAMES
from features.windows import parse_duration_ms
from serving.settings import FEATURE_REPO, MlflowSettings, ModelServingSettings
from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import MARKET_PREDICTIONS, SENSOR_PREDICTIONS, catalogue, ensure_topics


def api(
    host: Annotated[str | None, typer.Option(
        help="Address to bind. [env BRAID_API_HOST, default 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(
        help="Port. [env BRAID_API_PORT, default 8000]", min=1, max=65535)] = None,
    profile: Annotated[str | None, typer.Option(
        help="Feast profile of the online store. [env BRAID_API_FEAST_PROFILE, default local]")
    ] = None,
    repo: Annotated[Path, typer.Option(help="The Feast repository.",
                                       callback=inputs.existing_dir)] = FEATURE_REPO,
    model_uri: Annotated[str, typer.Option(
        help="Markets model (default models:/braid-markets-direction@<BRAID_MODEL_ALIAS>).")
    ] = "",
    topic_prefix: Annotated[str, typer.Option(help="Prefix of every topic name.")] = "",
) -> None:
    """Serve GET /predict/{pair}, POST /predict, GET /alerts/{client} and GET /health (OpenAPI
    at /docs). Set BRAID_API_TOKEN to require a bearer token."""
    import mlflow  # heavy imports here: `braid --help` stays fast
    import uvicorn

    from serving.api.app import Services, create_app
    from serving.api.latest import LatestByKey
    from serving.api.settings import ApiSettings
    from serving.models import ModelWatcher
    from serving.online_features import FeatureServiceReader
    from serving.store import ServingError, open_store

    settings = ApiSettings()
    mlflow.set_tracking_uri(MlflowSettings().resolved_tracking_uri())
    uri = model_uri or f"models:/{MODEL_NAMES['markets']}@{ModelServingSettings().alias}"
    try:
        store = open_store(profile or settings.feast_profile, repo)
        reader = FeatureServiceReader(store, FEATURE_SERVICES["markets"], "pair")
    except ServingError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    except Exception as error:  # Feast: the service is not registered
        typer.echo(f"error: cannot read feature service {FEATURE_SERVICES['markets']} from "
                   f"{repo}: {error} (run `feast apply` there)", err=True)
        raise typer.Exit(2) from error
    watcher = ModelWatcher(uri, reader.columns, reader.name,
                           poll_s=ModelServingSettings().poll_interval_s).start()
    kafka = KafkaSettings()
    topics = TopicSettings()
    names = {MARKET_PREDICTIONS, SENSOR_PREDICTIONS}
    specs = [replace(s, name=topic_prefix + s.name) for s in catalogue(topics) if s.name in names]
    ensure_topics(kafka, specs, topics)
    lookback = parse_duration_ms(settings.lookback)
    predictions = LatestByKey(kafka, topic_prefix + MARKET_PREDICTIONS, key_field="pair",
                              time_field="window_end_ms", lookback_ms=lookback).start()
    alerts = LatestByKey(kafka, topic_prefix + SENSOR_PREDICTIONS, key_field="client",
                         time_field="timestamp_ms", lookback_ms=lookback).start()
    token = settings.token.get_secret_value() if settings.token else None
    app = create_app(Services(reader, watcher, predictions, alerts, token or None))
    # the startup heap out of the collector's sight: a full collection (~200 ms with Feast and
    # MLflow loaded) would otherwise stall a request now and then
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(app, host=host or settings.host, port=port or settings.port,
                    log_level="warning")
    finally:
        watcher.stop()
        predictions.stop()
        alerts.stop()

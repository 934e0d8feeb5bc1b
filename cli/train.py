"""`braid train markets | sensors | models | reproduce`: train, log to MLflow, register, promote
by alias; rebuild a registered model's training data from its run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli import inputs
from cli.progress import training_status
from training.results import TrainResult

app = typer.Typer(help="Train models on feature-service training sets; every run in MLflow.",
                  no_args_is_help=True)

TrackingUri = Annotated[str | None, typer.Option(
    help="MLflow tracking URI. [env MLFLOW_TRACKING_URI or BRAID_MLFLOW_TRACKING_URI, "
         "default http://127.0.0.1:15000]")]
Metric = Annotated[str | None, typer.Option(
    help="Promotion metric: roc_auc, log_loss, accuracy, ... "
         "[env BRAID_TRAIN_PROMOTION_METRIC, default roc_auc]")]
Margin = Annotated[float | None, typer.Option(
    help="How much the new model must beat the champion by. "
         "[env BRAID_TRAIN_PROMOTION_MARGIN, default 0]")]
Seed = Annotated[int | None, typer.Option(help="Random seed. [env BRAID_TRAIN_SEED, default 0]")]


def _fail(command: str, error: Exception) -> typer.Exit:
    """One line naming the bad input (a pydantic error: its field and message)."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        first = error.errors()[0]
        text = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    else:
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
    typer.echo(f"braid train {command}: {text}", err=True)
    return typer.Exit(2)


def _report(result: TrainResult, baselines: tuple[str, ...]) -> None:
    m = result.metrics
    typer.echo(f"run {result.run_id}: {result.model_name} v{result.version} -> "
               f"{result.alias} ({result.decision.reason})")
    names = ("test", *(f"{b}_test" for b in baselines))
    for metric in ("roc_auc", "accuracy", "log_loss", "directional_accuracy", "recall"):
        if f"test_{metric}" in m:
            row = "  ".join(f"{n.removesuffix('_test') or 'model'}={m[f'{n}_{metric}']:.4f}"
                            for n in names if f"{n}_{metric}" in m)
            typer.echo(f"  {metric:<21} {row}")
    beaten = [b for b in baselines if m["test_roc_auc"] <= m[f"{b}_test_roc_auc"]
              or m["test_log_loss"] >= m[f"{b}_test_log_loss"]]
    if beaten:
        typer.echo(f"  the model does NOT beat {', '.join(beaten)} on the test period "
                   "(ROC AUC or log loss)")


@app.command()
def markets(
    start: Annotated[str, typer.Option(help="First candle close (UTC), e.g. 2018-05-08.",
                                       callback=inputs.utc_time)],
    end: Annotated[str, typer.Option(help="End of the range (excluded), e.g. 2018-05-12.",
                                     callback=inputs.utc_time)],
    pairs: Annotated[str, typer.Option(help="Comma-separated pairs, e.g. XBT/USD,ETH/USD.",
                                       callback=inputs.comma_pairs)],
    horizon: Annotated[int | None, typer.Option(
        help="Label: the close this many candles ahead is higher. "
             "[env BRAID_TRAIN_HORIZON, default 1]")] = None,
    profile: Annotated[str, typer.Option(help="Feast profile of the store.")] = "local",
    tracking_uri: TrackingUri = None,
    metric: Metric = None,
    margin: Margin = None,
    seed: Seed = None,
) -> None:
    """XGBoost on markets_direction_v1 (next candle's direction); log, register, promote."""
    from serving.store import ServingError
    from training.markets_model import train_markets

    inputs.ordered(start, end, ("--start", "--end"))
    wanted = [p.strip() for p in pairs.split(",") if p.strip()]
    try:
        with training_status("training markets"):
            result = train_markets(start, end, wanted, horizon=horizon, profile=profile,
                                   tracking_uri=tracking_uri, promotion_metric=metric,
                                   promotion_margin=margin, seed=seed)
    except (ServingError, ValueError) as error:
        raise _fail("markets", error) from error
    _report(result, ("majority", "persistence"))


@app.command()
def sensors(
    source: Annotated[str, typer.Option(help="simulator or skab (real labelled anomalies).")
                      ] = "simulator",
    clients: Annotated[int, typer.Option(help="Simulated clients.", min=1)] = 300,
    minutes: Annotated[int, typer.Option(help="Simulated minutes of history.", min=1)] = 240,
    skab_dir: Annotated[Path | None, typer.Option(
        help="SKAB folder (default ../shared/data/sensors/skab).",
        callback=inputs.existing_dir)] = None,
    tracking_uri: TrackingUri = None,
    metric: Metric = None,
    margin: Margin = None,
    seed: Seed = None,
) -> None:
    """XGBoost on the sensors_alert_v1 vector; against never-alert and the logistic baseline."""
    from training.sensors_model import train_sensors

    if source not in ("simulator", "skab"):
        raise typer.BadParameter(f"unknown source {source!r}: simulator or skab",
                                 param_hint="'--source'")
    try:
        with training_status("training sensors"):
            result = train_sensors(source, clients=clients,  # type: ignore[arg-type]
                                   minutes=minutes, skab_dir=skab_dir, tracking_uri=tracking_uri,
                                   promotion_metric=metric, promotion_margin=margin, seed=seed)
    except (FileNotFoundError, ValueError) as error:
        raise _fail("sensors", error) from error
    _report(result, ("never_alert", "logistic"))


@app.command()
def models(tracking_uri: TrackingUri = None) -> None:
    """Each pipeline's registered model: the versions holding `champion` and `challenger`."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from features.model_contract import CHALLENGER, CHAMPION, MODEL_NAMES
    from serving.settings import MlflowSettings

    uri = tracking_uri or MlflowSettings().resolved_tracking_uri()
    client = MlflowClient(uri, uri)
    for pipeline, name in MODEL_NAMES.items():
        for alias in (CHAMPION, CHALLENGER):
            try:
                version = client.get_model_version_by_alias(name, alias)
            except MlflowException:
                typer.echo(f"{pipeline:<8} {name} @{alias}: none")
                continue
            run = client.get_run(version.run_id) if version.run_id else None
            score = run.data.metrics.get("promotion_candidate_score") if run else None
            typer.echo(f"{pipeline:<8} {name} @{alias}: v{version.version} "
                       f"(run {version.run_id}, promotion score {score})")


@app.command()
def reproduce(
    model: Annotated[str, typer.Option(
        help="Registered model version: NAME/VERSION or NAME@ALIAS, "
             "e.g. braid-markets-direction/3.")],
    refit: Annotated[bool, typer.Option(
        help="Also fit again with the run's logged settings and seed, and compare every "
             "logged score.")] = False,
    profile: Annotated[str, typer.Option(help="Feast profile of the store (markets).")
                       ] = "local",
    repo: Annotated[Path | None, typer.Option(
        help="Feast repository (default: feature_repo/ of the checkout).")] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Rebuild a model's training set from its MLflow run (markets: the Delta table versions it
    read; sensors: the simulator seed or SKAB files) and compare its digest with the logged one.
    Exit 0 when everything matches, 1 when something differs, 2 when it cannot be rebuilt."""
    import os

    from serving.store import ServingError
    from training.reproduce import reproduce as rebuild

    # the record is one small file: no download progress bar around the comparison
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        result = rebuild(model, refit=refit, profile=profile, repo=repo,
                         tracking_uri=tracking_uri)
    except (ServingError, ValueError, FileNotFoundError) as error:
        raise _fail("reproduce", error) from error
    for line in result.lines():
        typer.echo(line)
    if not result.matches:
        raise typer.Exit(1)

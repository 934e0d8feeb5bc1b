"""`braid up | down | status`: the embedded local stack (see infra/README.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from infra import stack
from infra.processes import ServiceError
from infra.settings import KNOWN_SERVICES, StackSettings

console = Console()


def _settings(state_dir: Path | None, **overrides: object) -> StackSettings:
    """The running stack's recorded settings (else the environment's), plus the options given.

    So `braid up --services broker` then `braid up` means the same stack, not the defaults.
    """
    try:
        base = StackSettings() if state_dir is None else StackSettings(state_dir=state_dir)
        base = stack.recorded_settings(base)
        given = {k: v for k, v in overrides.items() if v is not None}
        return StackSettings.model_validate({**base.model_dump(), **given})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _state_dir(value: Path | None) -> Path | None:
    if value is not None and value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} is a file, not a folder")
    return value


STATE_DIR = typer.Option(
    None, "--state-dir", help="Logs, PID files and data (env BRAID_STACK_STATE_DIR; default var/).",
    callback=_state_dir,
)


def up(
    services: str | None = typer.Option(
        None, "--services",
        help=f"Comma-separated services among {', '.join(KNOWN_SERVICES)} "
        "(env BRAID_STACK_SERVICES; default all).",
    ),
    topics: bool = typer.Option(
        True, "--topics/--no-topics", help="Create the catalogue's topics."
    ),
    broker_nodes: int | None = typer.Option(
        None, "--broker-nodes", min=1,
        help="Kafka nodes (env BRAID_STACK_BROKER_NODES; default 1). Topics get min(3, N) "
        "replicas, min.insync.replicas min(2, N); node n listens on the broker port + 2(n-1).",
    ),
    state_dir: Path | None = STATE_DIR,
) -> None:
    """Start the local stack (idempotent), check its health, create the topics."""
    settings = _settings(state_dir, services=services, broker_nodes=broker_nodes)
    try:
        started = stack.up(settings, create_topics=topics)
    except ServiceError as exc:
        console.print(f"[red]braid up failed:[/red] {exc}", markup=True, highlight=False)
        console.print("`braid down` stops what did start.")
        raise typer.Exit(1) from exc
    _print_status(settings)
    console.print(f"started: {', '.join(started) or 'nothing (already up)'}")
    _print_addresses(stack.recorded_settings(settings))


def _print_addresses(settings: StackSettings) -> None:
    """Where clients find the services (what to put in KAFKA_BOOTSTRAP_SERVERS, REDIS_URL ...)."""
    enabled = settings.enabled_services()
    if "broker" in enabled:
        console.print(f"Kafka:  KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers} "
                      f"({settings.broker_nodes} node{'s' if settings.broker_nodes > 1 else ''}: "
                      f"topics with {settings.replication_factor} replicas, "
                      f"min.insync.replicas {settings.min_insync_replicas})")
    if "redis" in enabled:
        console.print(f"Redis:  REDIS_URL={settings.redis_url}   (Feast's redis profile: "
                      f"BRAID_FEAST_REDIS={settings.host}:{settings.redis_port})")
    if "mlflow" in enabled:
        console.print(f"MLflow: MLFLOW_TRACKING_URI={settings.mlflow_tracking_uri} "
                      f"(UI: {settings.mlflow_tracking_uri})")
    if "prefect" in enabled:
        console.print(f"Prefect UI: {settings.prefect_url}   (CLI: export "
                      f"PREFECT_API_URL={settings.prefect_api_url}, then e.g. "
                      "prefect deployment run 'backfill/daily' --param start=2018-05-09)")
    if "feast-ui" in enabled:
        console.print(f"Feast UI: {settings.feast_ui_url}")
    if "gcs" in enabled:
        console.print(f"GCS:    STORAGE_EMULATOR_HOST={settings.gcs_endpoint} "
                      f"(bucket gs://{settings.gcs_bucket})")


def down(state_dir: Path | None = STATE_DIR) -> None:
    """Stop the local stack's services by their recorded PIDs, in reverse order."""
    settings = _settings(state_dir)
    try:
        stopped = stack.down(settings)
    except ServiceError as exc:
        console.print(f"[red]braid down failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def status(state_dir: Path | None = STATE_DIR) -> None:
    """Show each service (PID, health, port, log); exit 1 if any is down or unhealthy."""
    settings = _settings(state_dir)
    try:
        healthy = _print_status(settings)
    except ServiceError as exc:
        console.print(f"[red]braid status failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    if not healthy:
        raise typer.Exit(1)


def _print_status(settings: StackSettings) -> bool:
    """Print the status table; True if every service is alive and healthy."""
    rows = stack.status(settings)
    table = Table(title=f"braid stack ({settings.state_dir})")
    columns = ("service", "pid", "alive", "healthy", "port", "startup", "rss", "uptime", "log")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.name,
            str(row.pid or "-"),
            "[green]yes[/green]" if row.alive else "[red]no[/red]",
            "[green]yes[/green]" if row.healthy else "[red]no[/red]",
            str(row.port),
            f"{row.startup_s:.1f}s" if row.startup_s is not None else "-",
            f"{row.rss_bytes / 2**20:.0f} MiB" if row.rss_bytes is not None else "-",
            f"{row.uptime_s:.0f}s" if row.uptime_s is not None else "-",
            str(row.log),
        )
    console.print(table)
    return bool(rows) and all(r.alive and r.healthy for r in rows)


def register(root: typer.Typer) -> None:
    """Add `up`, `down` and `status` to the root command."""
    root.command("up")(up)
    root.command("down")(down)
    root.command("status")(status)

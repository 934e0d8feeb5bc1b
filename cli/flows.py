"""`braid flows serve`: Braid's Prefect deployments, registered and run by one process (the
"worker" of a compose stack or a Kubernetes cluster; `braid up` runs the same as `prefect-flows`).
"""

from __future__ import annotations

import typer

app = typer.Typer(help="Prefect flows: serve Braid's deployments.", no_args_is_help=True)


@app.command()
def serve() -> None:
    """Register every deployment of orchestration/deployments.py (schedules, triggers) with the
    Prefect server at PREFECT_API_URL and run their flow runs in subprocesses until SIGTERM.
    PREFECT_RUNNER_SERVER_ENABLE=true adds Prefect's health endpoint (GET /health)."""
    from orchestration.serve import main  # heavy (Prefect, Feast, Spark's Python side)

    main()

"""The Prefect server: API (`/api`), UI (`/`), scheduler and automations, one process.

`prefect server start` bound to `host:prefect_port`, its state (SQLite `prefect.db`) under
`PREFECT_HOME=<state>/data/prefect`, analytics off. Healthy when `GET /api/health` answers
(≈4 s here). Clients (the `prefect` CLI, `prefect deployment run ...`) need
`PREFECT_API_URL=http://host:prefect_port/api`, which `braid up` prints.
"""

from __future__ import annotations

from functools import partial

from infra.health import http_ok
from infra.services.base import ServiceSpec, venv_executable
from infra.settings import StackSettings

NAME = "prefect"


def prefect_home(settings: StackSettings) -> str:
    return str((settings.data_dir / "prefect").resolve())


def client_env(settings: StackSettings) -> dict[str, str]:
    """What a Prefect client needs to talk to this server."""
    return {
        "PREFECT_API_URL": settings.prefect_api_url,
        "PREFECT_HOME": prefect_home(settings),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def spec(settings: StackSettings) -> ServiceSpec:
    """`prefect server start` on `prefect_port`."""
    exe = venv_executable("prefect", "install prefect (pip install prefect==3.8.8)")
    home = settings.data_dir / "prefect"
    return ServiceSpec(
        name=NAME,
        argv=[exe, "server", "start", "--host", settings.host,
              "--port", str(settings.prefect_port)],
        host=settings.host,
        port=settings.prefect_port,
        # the UI asks the API at PREFECT_API_URL: this server's, whatever the caller exported
        env={**client_env(settings), "PREFECT_UI_API_URL": settings.prefect_api_url},
        health=partial(http_ok, f"{settings.prefect_api_url}/health"),
        prepare=partial(home.mkdir, parents=True, exist_ok=True),
    )

"""`feast ui`: Feast's web UI (feature views, services, entities, data sources) on 127.0.0.1.

Shows the registry of `feast_repo` (default: the checkout's `feature_repo/`), re-read every few
seconds, so views applied after the start appear. Healthy when `GET /` answers (≈30 s here: it
builds its registry server at start).

Every `braid up` then runs `feast -c <repo> apply` on a repository that declares objects (its
`.py` files; `feature_repo/braid_features.py`), as a user would: the UI, `training_set(...)`,
`braid api` and the predictor find the feature views and services without a manual step, and a
second `braid up` changes nothing (Feast applies only differences). A repository of only a
`feature_store.yaml`, whose registry something else fills, is left alone. Its output goes to
`var/log/feast-apply.log`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from functools import partial
from pathlib import Path

from infra.health import http_ok
from infra.processes import ServiceError
from infra.services.base import ServiceSpec, venv_executable
from infra.settings import StackSettings

NAME = "feast-ui"
CHECKOUT_REPO = Path(__file__).resolve().parents[2] / "feature_repo"


def prometheus_dir(settings: StackSettings, service: str) -> Path:
    """A folder of its own for Feast's metrics files.

    Importing feast points `PROMETHEUS_MULTIPROC_DIR` at a temporary folder that it removes at
    exit; a service started by `braid up` would inherit that folder, gone once `braid up`
    returns (and every flow run importing feast would crash)."""
    return (settings.data_dir / service / "prometheus").resolve()


def spec(settings: StackSettings) -> ServiceSpec:
    """`feast -c <repo> ui --host <host> --port <feast_ui_port>`."""
    exe = venv_executable("feast", "install feast (pip install 'feast[redis,duckdb]==0.67.0')")
    repo = (settings.feast_repo or CHECKOUT_REPO).resolve()
    metrics = prometheus_dir(settings, NAME)
    return ServiceSpec(
        name=NAME,
        argv=[exe, "-c", str(repo), "ui", "--host", settings.host,
              "--port", str(settings.feast_ui_port)],
        host=settings.host,
        port=settings.feast_ui_port,
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics)},
        health=partial(http_ok, f"{settings.feast_ui_url}/"),
        prepare=partial(metrics.mkdir, parents=True, exist_ok=True),
        after_start=partial(apply_repo, exe, repo, {"PROMETHEUS_MULTIPROC_DIR": str(metrics)},
                            settings.log_dir / "feast-apply.log"),
    )


def apply_repo(feast: str, repo: Path, env: Mapping[str, str], log: Path,
               timeout_s: float = 600.0) -> None:
    """`feast -c <repo> apply` when the repository declares objects (module docstring)."""
    if not any(repo.glob("*.py")):
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"--- feast -c {repo} apply\n".encode())
        out.flush()
        done = subprocess.run([feast, "-c", str(repo), "apply"], env={**os.environ, **env},
                              cwd=repo, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s,
                              check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:]
        raise ServiceError(f"feast apply in {repo} failed (exit {done.returncode}): "
                           f"{' '.join(tail)} (see {log})")

"""Fixtures of the orchestration tests: real 2018 Kraken candles in Delta tables with a Feast
repo over them, Prefect's test harness (a temporary real server) for in-process flow runs, and
a stack as `braid up` starts it (MLflow, the Prefect server, the process serving the
deployments, `feast ui`) on free ports for the deployment and browser tests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from deltalake import write_deltalake
from feast import FeatureStore
from prefect.testing.utilities import prefect_test_harness

from infra import stack
from infra.services import prefect
from infra.settings import StackSettings
from infra.testing import free_port
from tests.conftest import start_stack
from tests.integration.serving.offline_tables import DATA, candle_tables, local_repo, with_day

XBT_TRADES = DATA / "XBTUSD_kraken_2018_trades.sorted.csv"


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """Flows route structlog to Prefect's run logger; later tests get the previous setup."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def markets_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FeatureStore]:
    """Feast (SQLite online) over `candles` / `indicators` tables of 3 days of real XBT/USD and
    ETH/USD trades (2018-05-08..10), written as the backfill writes them; the repo folder."""
    root = tmp_path_factory.mktemp("flows-offline")
    for name, table in zip(("candles", "indicators"), candle_tables(days=3), strict=True):
        write_deltalake(str(root / name), with_day(table),
                        partition_by=["pair", "window_ms", "day"])
    repo = tmp_path_factory.mktemp("flows-repo")
    return repo, local_repo(repo, root)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server (SQLite) that flows called in this process report to."""
    with prefect_test_harness(server_startup_timeout=180):
        yield


@dataclass(frozen=True)
class OrchestrationStack:
    settings: StackSettings
    #: Environment of a user's shell pointed at this stack (PREFECT_API_URL ...).
    env: dict[str, str]
    repo: Path
    offline_root: Path

    @property
    def mlflow_uri(self) -> str:
        return self.settings.mlflow_tracking_uri


@pytest.fixture(scope="session")
def orchestration_stack(tmp_path_factory: pytest.TempPathFactory
                        ) -> Iterator[OrchestrationStack]:
    """MLflow, Prefect, the served deployments and feast ui, as `braid up` starts them; the
    flows read XBT/USD 2018 trades and write Delta tables (empty at first) that a Feast repo of
    their own reads. Schedules are paused: only the runs a test asks for happen."""
    if not XBT_TRADES.exists():
        pytest.skip(f"real trades missing: {XBT_TRADES}")
    base = tmp_path_factory.mktemp("orchestration-stack")
    offline_root = base / "offline"
    repo = base / "feature_repo"
    flow_env = {
        "BRAID_FEAST_OFFLINE_ROOT": str(offline_root),
        "BRAID_FLOW_FEAST_REPO": str(repo),
        "BRAID_FLOW_TRADE_INPUTS": json.dumps([str(XBT_TRADES)]),
        "BRAID_FLOW_PAIRS": json.dumps(["XBT/USD"]),
        "BRAID_FLOW_DURATIONS": json.dumps(["1m"]),
        "BRAID_FLOW_SCHEDULES_ACTIVE": "false",
        "BRAID_FLOW_SPARK_MASTER": "local[1]",
    }
    settings = StackSettings(
        die_with_parent=True, state_dir=base / "var", health_timeout_s=180,
        mlflow_port=free_port(), prefect_port=free_port(), prefect_flows_port=free_port(),
        feast_ui_port=free_port(), feast_repo=repo,
        services=["mlflow", "prefect", "prefect-flows", "feast-ui"],
    )
    with pytest.MonkeyPatch.context() as mp:
        for key, value in flow_env.items():
            mp.setenv(key, value)
        local_repo(repo, offline_root)  # feast apply: the views, over tables not written yet
        start_stack(settings)
        env = {**os.environ, **prefect.client_env(settings),
               "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}
        try:
            yield OrchestrationStack(settings, env, repo, offline_root)
        finally:
            stack.down(settings)

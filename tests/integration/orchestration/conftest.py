"""Fixtures of the orchestration tests: real 2018 Kraken candles in Delta tables with a Feast
repo over them, Prefect's test harness (a temporary real server) for in-process flow runs, and
a stack as `braid up` starts it (MLflow, the Prefect server, the process serving the
deployments, `feast ui`) on free ports for the deployment and browser tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
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
from tests.integration.serving.offline_tables import (
    DATA,
    TABLE_PARTITIONS,
    candle_tables,
    local_repo,
    with_day,
)

XBT_TRADES = DATA / "XBTUSD_kraken_2018_trades.sorted.csv"
HERE = Path(__file__).resolve().parent

#: Stops of the session services below, run as soon as the last orchestration test is done
#: (their fixtures' own teardown comes at the end of the session, and until then the servers
#: would take CPU from the tests after them). Each stop is idempotent. Each of these fixtures
#: serves one module (the stack: test_orchestration_deployments; the harness:
#: test_orchestration_flows), so a stopped one is never handed out again.
_stops: list[Callable[[], object]] = []


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is None or HERE not in nextitem.path.parents:
        while _stops:
            _stops.pop()()


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
                        partition_by=TABLE_PARTITIONS)
    repo = tmp_path_factory.mktemp("flows-repo")
    return repo, local_repo(repo, root)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server (SQLite) that flows called in this process report to."""
    with ExitStack() as harness:
        harness.enter_context(prefect_test_harness(server_startup_timeout=180))
        _stops.append(harness.close)
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
        _stops.append(lambda: stack.down(settings))
        env = {**os.environ, **prefect.client_env(settings),
               "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}
        try:
            yield OrchestrationStack(settings, env, repo, offline_root)
        finally:
            stack.down(settings)


@dataclass(frozen=True)
class FinishedRun:
    """A `prefect deployment run ... --watch` as a user typed it, and its flow run id."""

    output: str
    returncode: int
    flow_run_id: str


def prefect_cli(args: list[str], env: dict[str, str], timeout_s: float = 900
                ) -> subprocess.CompletedProcess[str]:
    """The `prefect` command line of the venv, in a shell pointed at the stack."""
    exe = str(Path(sys.executable).parent / "prefect")
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s)


def deployment_run(name: str, params: dict[str, str], env: dict[str, str]) -> FinishedRun:
    """`prefect deployment run <name> --param k=v ... --watch`."""
    args = ["deployment", "run", name, "--watch", "--watch-timeout", "840"]
    for key, value in params.items():
        args += ["--param", f"{key}={value}"]
    done = prefect_cli(args, env)
    output = done.stdout + done.stderr
    found = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert found, output
    return FinishedRun(output, done.returncode, found.group(1))


@pytest.fixture(scope="session")
def retrained(orchestration_stack: OrchestrationStack) -> FinishedRun:
    """`retrain/daily` over 2018-05-08..10 (XBT/USD), run from a shell against the stack."""
    return deployment_run("retrain/daily", {"start": "2018-05-08", "end": "2018-05-11"},
                          orchestration_stack.env)

"""End to end against the stack `braid up` starts: `prefect deployment run 'retrain/daily'` from
a shell backfills real 2018 XBT/USD trades with Spark, loads the online store, trains and
registers a model in MLflow (champion: the first version); a consistency run below its
threshold starts `retrain` through the deployment's event trigger. Then the three UIs `braid up`
prints, opened in Debian's chromium (headless, through Playwright): Prefect shows the
deployments and the finished retrain run, MLflow the registered model with its `champion`
alias, Feast the feature views. (One module: the stack and its retrain run are built once, and
pytest-xdist's `--dist loadfile` keeps a module on one worker.)"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from uuid import UUID

import pytest
import yaml
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient
from playwright.sync_api import Page, expect, sync_playwright
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import DeploymentSort, FlowRunSort, LogSort
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

from orchestration.deployments import deployments
from tests.integration.orchestration.conftest import (
    FinishedRun,
    OrchestrationStack,
    deployment_run,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "braid-markets-direction"


def _client(stack: OrchestrationStack) -> SyncPrefectClient:
    """A client of the stack's server. Its read calls get an explicit limit and sort: the
    server (with FastAPI 0.154) refuses the nulls the client sends by default."""
    with temporary_settings({PREFECT_API_URL: stack.settings.prefect_api_url}):
        return get_client(sync_client=True)


def _run_tree_logs(client: SyncPrefectClient, flow_run_id: str) -> list[str]:
    """Log lines of a flow run and of its subflow runs."""
    ids = [UUID(flow_run_id)]
    for run in client.read_flow_runs(limit=50, sort=FlowRunSort.START_TIME_ASC):
        if run.parent_task_run_id is not None:
            parent = client.read_task_run(run.parent_task_run_id)
            if str(parent.flow_run_id) == flow_run_id:
                ids.append(run.id)
    messages: list[str] = []
    while True:  # pages of 200 (the server's most)
        page = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)),
                                limit=200, offset=len(messages), sort=LogSort.TIMESTAMP_ASC)
        messages += [log.message for log in page]
        if len(page) < 200:
            return messages


def test_retrain_deployment_run_from_a_shell_registers_a_new_model_version(
        orchestration_stack: OrchestrationStack, retrained: FinishedRun) -> None:
    assert retrained.returncode == 0, retrained.output
    assert "Flow run finished successfully in 'Completed'" in retrained.output

    mlflow = MlflowClient(orchestration_stack.mlflow_uri)
    versions = mlflow.search_model_versions(f"name='{MODEL}'")
    assert [v.version for v in versions] == ["1"]
    assert mlflow.get_model_version_by_alias(MODEL, "champion").version == "1"
    run = mlflow.get_run(versions[0].run_id or "")
    assert run.data.params["pairs"] == "XBT/USD"

    candles = DeltaTable(str(orchestration_stack.offline_root / "candles"))
    days = sorted(candles.to_pandas(columns=["day"])["day"].unique())
    assert days == [date(2018, 5, 8), date(2018, 5, 9), date(2018, 5, 10)]

    with _client(orchestration_stack) as client:
        logs = "\n".join(_run_tree_logs(client, retrained.flow_run_id))
    assert f"MLflow run: {orchestration_stack.mlflow_uri}/#/experiments/" in logs
    assert run.info.run_id in logs
    assert "Delta table versions written: {'candles': 0, 'indicators': 0" in logs
    assert "stage done" in logs  # the backfill's progress, stage by stage
    assert f"registered {MODEL} version 1 -> champion" in logs

    # re-deciding on the version's own test period: it holds champion already, nothing moves
    promoted = deployment_run("promote/on-demand", {"version": "1"}, orchestration_stack.env)
    assert promoted.returncode == 0, promoted.output
    assert mlflow.get_model_version_by_alias(MODEL, "champion").version == "1"


def test_consistency_below_its_threshold_fails_and_triggers_retrain(
        orchestration_stack: OrchestrationStack, retrained: FinishedRun) -> None:
    checked = deployment_run("consistency/hourly", {"start": "2018-05-08", "end": "2018-05-11",
                                                    "threshold": "1.01"},
                             orchestration_stack.env)
    assert checked.returncode == 1, checked.output
    assert "Flow run finished in state 'Failed'" in checked.output

    with _client(orchestration_stack) as client:
        deadline, triggered = time.monotonic() + 120, list[FlowRun]()
        while not triggered and time.monotonic() < deadline:
            triggered = [r for r in client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["daily"])),
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(not_any_=[UUID(retrained.flow_run_id)])),
                limit=20, sort=FlowRunSort.START_TIME_ASC) if
                r.parameters.get("end") == "2018-05-11" and r.flow_id is not None
                and client.read_flow(r.flow_id).name == "retrain"]
            time.sleep(2)
        assert triggered, "no retrain run was started by the consistency event"
        # the event's range: the checked days and the training window before them
        assert triggered[0].parameters == {"start": "2018-05-02", "end": "2018-05-11"}
        client.set_flow_run_state(triggered[0].id, Cancelling())  # it would backfill 9 days


def test_served_deployments_are_the_declared_ones(orchestration_stack: OrchestrationStack) -> None:
    with _client(orchestration_stack) as client:
        served = {f"{client.read_flow(d.flow_id).name}/{d.name}" for d in
                  client.read_deployments(limit=50, sort=DeploymentSort.NAME_ASC)}
    declared = {f"{d.flow_name}/{d.name}" for d in deployments()}
    assert {"backfill/daily", "materialize/hourly", "train/daily", "retrain/daily",
            "consistency/hourly", "sensors-backfill/daily", "materialize/sensors-hourly",
            "train/sensors-daily", "sensors-retrain/daily", "consistency/sensors-hourly",
            "drift/daily", "promote/on-demand"} <= declared
    assert served == declared
    assert Path(orchestration_stack.settings.log_dir / "prefect-flows.log").exists()


def test_backfill_daily_from_a_shell_rewrites_the_same_day_identically(
        orchestration_stack: OrchestrationStack, retrained: FinishedRun) -> None:
    table = str(orchestration_stack.offline_root / "candles")

    def day_rows() -> list[dict[str, object]]:
        frame = DeltaTable(table).to_pandas(filters=[("day", "=", date(2018, 5, 9))])
        rows: list[dict[str, object]] = frame.sort_values("window_start_ms").to_dict("records")
        return rows

    before, version = day_rows(), DeltaTable(table).version()
    again = deployment_run("backfill/daily", {"start": "2018-05-09"}, orchestration_stack.env)
    assert again.returncode == 0, again.output
    assert DeltaTable(table).version() == version + 1  # one commit replacing the day
    assert len(before) > 1000 and day_rows() == before  # a minute candle per traded minute


# --- the UIs ----------------------------------------------------------------------------------

TIMEOUT_MS = 60_000
DECLARED = len(deployments())


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium not found: apt-get install chromium (scripts/setup.sh)",
                    pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def test_prefect_ui_shows_the_deployments_and_the_finished_retrain_run(
        page: Page, orchestration_stack: OrchestrationStack, retrained: FinishedRun) -> None:
    base = orchestration_stack.settings.prefect_url
    page.goto(f"{base}/deployments")
    expect(page.get_by_text(f"{DECLARED} Deployments")).to_be_visible(
        timeout=TIMEOUT_MS)
    search = page.get_by_role("searchbox", name="Search deployments")
    for name in ("retrain", "sensors-hourly"):
        search.fill(name)
        expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=TIMEOUT_MS)
    page.goto(f"{base}/runs/flow-run/{retrained.flow_run_id}")
    expect(page.get_by_text("Completed").first).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("retrain").first).to_be_visible(timeout=TIMEOUT_MS)


def test_mlflow_ui_shows_the_registered_model_with_its_champion_alias(
        page: Page, orchestration_stack: OrchestrationStack, retrained: FinishedRun) -> None:
    page.goto(f"{orchestration_stack.mlflow_uri}/#/models/braid-markets-direction")
    expect(page.get_by_text("Version 1").first).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("champion").first).to_be_visible(timeout=TIMEOUT_MS)


def test_feast_ui_shows_the_feature_views(page: Page,
                                          orchestration_stack: OrchestrationStack) -> None:
    config = yaml.safe_load((orchestration_stack.repo / "feature_store.yaml").read_text())
    page.goto(f"{orchestration_stack.settings.feast_ui_url}/p/{config['project']}/feature-view")
    for view in ("candles_1m", "indicators_1m", "sensor_fa"):
        expect(page.get_by_text(view, exact=True).first).to_be_visible(timeout=TIMEOUT_MS)

"""End to end against the stack `braid up` starts: `prefect deployment run 'retrain/daily'` from
a shell backfills real 2018 XBT/USD trades with Spark, loads the online store, trains and
registers a model in MLflow (champion: the first version); a consistency run below its
threshold starts `retrain` through the deployment's event trigger. Then the three UIs `braid up`
prints, opened in Debian's chromium (headless, through Playwright): Prefect shows the
deployments and the finished retrain run, MLflow the registered model with its `champion`
alias, Feast the feature views. (One module: the stack and its retrain run are built once, and
pytest-xdist's `--dist loadfile` keeps a module on one worker.)"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from uuid import UUID

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
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
from prefect.states import Cancelled, Cancelling

from orchestration.deployments import deployments
from tests.integration.orchestration.conftest import (
    FinishedRun,
    OrchestrationStack,
    deployment_run,
)
from tests.support.psi_reference import independent_psi, minute_values

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "braid-markets-direction"


def _client(stack: OrchestrationStack) -> SyncPrefectClient:
    """A client of the stack's server. Its read calls get an explicit limit and sort: the
    server (with FastAPI 0.154) refuses the nulls the client sends by default."""
    with temporary_settings({PREFECT_API_URL: stack.settings.prefect_api_url}):
        return get_client(sync_client=True)


def _stop(client: SyncPrefectClient, flow_run_id: UUID, timeout_s: float = 300) -> None:
    """Cancel a triggered run and wait until it is over: a run left going would write the
    offline tables under the tests after it. Always through Cancelling, which the runner serving
    the deployment acts on (it kills the run's process, or marks a run it has not started
    cancelled); forcing Cancelled would not stop a process that has just started."""
    client.set_flow_run_state(flow_run_id, Cancelling())
    asked = time.monotonic()
    while time.monotonic() < asked + timeout_s:
        run = client.read_flow_run(flow_run_id)
        if run.state is not None and run.state.is_final():
            return
        if run.start_time is None and time.monotonic() > asked + 20:
            # never started: the runner has no process to kill and no poller picks up a
            # cancelling run, so nothing can write any more; close it
            client.set_flow_run_state(flow_run_id, Cancelled(), force=True)
            return
        time.sleep(2)
    pytest.fail(f"flow run {flow_run_id} did not stop within {timeout_s:.0f} s")


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

    mlflow = MlflowClient(orchestration_stack.mlflow_uri, orchestration_stack.mlflow_uri)
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


def _test_rows(stack: OrchestrationStack, params: dict[str, str]
               ) -> tuple[pd.DataFrame, np.ndarray]:
    """A markets run's test period, rebuilt from its logged parameters as the flow does."""
    from serving.store import open_store
    from training.markets_model import prepare, service_columns
    from training.splits import time_split
    from training.training_sets import training_set

    store = open_store("local", stack.repo)
    ts = training_set("markets_direction_v1", start=params["start"], end=params["end"],
                      pairs=params["pairs"].split(","), store=store)
    data = prepare(ts, service_columns(store, "markets_direction_v1"), int(params["horizon"]),
                   {})
    parts = time_split(data.times, gap=data.gap_ms,
                       validation_fraction=float(params["validation_fraction"]),
                       test_fraction=float(params["test_fraction"]))
    return data.features.iloc[parts.test], data.labels[parts.test]


def _register(stack: OrchestrationStack, model: xgb.XGBClassifier, like: str) -> str:
    """`model` as a new version of the markets model, with the run parameters (hence the test
    period) and the signature of version `like`: a stand-in whose quality is known."""
    import mlflow as mlflow_api
    import mlflow.xgboost

    client = MlflowClient(stack.mlflow_uri, stack.mlflow_uri)
    base = client.get_model_version(MODEL, like)
    mlflow_api.set_tracking_uri(stack.mlflow_uri)
    signature = mlflow_api.models.get_model_info(f"models:/{MODEL}/{like}").signature
    with mlflow_api.start_run(experiment_id=client.get_run(base.run_id or "").info.experiment_id):
        mlflow_api.log_params(client.get_run(base.run_id or "").data.params)
        info = mlflow.xgboost.log_model(
            model, name="model", signature=signature, registered_model_name=MODEL,
            model_format="ubj", pip_requirements=mlflow.xgboost.get_default_pip_requirements())
    return str(info.registered_model_version)


def test_promote_on_demand_promotes_a_better_challenger_and_refuses_a_worse_one(
        orchestration_stack: OrchestrationStack, retrained: FinishedRun) -> None:
    from sklearn.metrics import roc_auc_score

    assert retrained.returncode == 0, retrained.output
    client = MlflowClient(orchestration_stack.mlflow_uri, orchestration_stack.mlflow_uri)
    params = client.get_run(client.get_model_version(MODEL, "1").run_id or "").data.params
    x_test, y_test = _test_rows(orchestration_stack, params)
    # stand-ins whose quality on v1's test period is known by construction: one fitted on
    # that very period (it has seen the answers), one fitted on its flipped labels
    seen = xgb.XGBClassifier(n_estimators=40, max_depth=4, random_state=0).fit(x_test, y_test)
    flipped = xgb.XGBClassifier(n_estimators=40, max_depth=4, random_state=0).fit(
        x_test, 1 - y_test)
    v1 = mlflow_xgboost_scores(orchestration_stack, "1", x_test)
    worse = _register(orchestration_stack, flipped, like="1")
    better = _register(orchestration_stack, seen, like="1")
    auc = {v: roc_auc_score(y_test, p) for v, p in (
        ("1", v1), (worse, flipped.predict_proba(x_test)[:, 1]),
        (better, seen.predict_proba(x_test)[:, 1]))}
    assert auc[worse] < auc["1"] < auc[better], auc  # by hand, with scikit-learn

    refused = deployment_run("promote/on-demand", {"version": worse}, orchestration_stack.env)
    assert refused.returncode == 0, refused.output
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    assert client.get_model_version_by_alias(MODEL, "challenger").version == worse
    run = client.get_run(client.get_model_version(MODEL, worse).run_id or "")
    assert run.data.tags["promotion.decision"] == "challenger"
    assert run.data.metrics["promotion_candidate_score"] == pytest.approx(auc[worse], abs=1e-9)
    assert run.data.metrics["promotion_champion_score"] == pytest.approx(auc["1"], abs=1e-9)

    promoted = deployment_run("promote/on-demand", {"version": better}, orchestration_stack.env)
    assert promoted.returncode == 0, promoted.output
    assert client.get_model_version_by_alias(MODEL, "champion").version == better
    run = client.get_run(client.get_model_version(MODEL, better).run_id or "")
    assert run.data.tags["promotion.decision"] == "champion"
    assert run.data.tags["promotion.champion_version"] == "1"
    assert run.data.metrics["promotion_candidate_score"] == pytest.approx(auc[better], abs=1e-9)


def mlflow_xgboost_scores(stack: OrchestrationStack, version: str,
                          x: pd.DataFrame) -> np.ndarray:
    import mlflow as mlflow_api
    import mlflow.xgboost

    mlflow_api.set_tracking_uri(stack.mlflow_uri)
    model = mlflow.xgboost.load_model(f"models:/{MODEL}/{version}")
    return np.asarray(model.predict_proba(x.astype("float64"))[:, 1])


def test_drift_above_its_threshold_triggers_retrain(
        orchestration_stack: OrchestrationStack, retrained: FinishedRun) -> None:
    # real XBT/USD minutes: 2018-05-10 against 05-08..09 (the backfill wrote them)
    candles = str(orchestration_stack.offline_root / "candles")
    expected = independent_psi(
        minute_values(candles, "XBT/USD", "close", "2018-05-08", "2018-05-10"),
        minute_values(candles, "XBT/USD", "close", "2018-05-10", "2018-05-11"))
    assert expected > 0.2  # the day's closes really moved off the two days before

    with _client(orchestration_stack) as client:
        seen = {r.id for r in client.read_flow_runs(limit=200, sort=FlowRunSort.START_TIME_ASC)}
    checked = deployment_run("drift/daily", {"day": "2018-05-10", "reference_days": "2",
                                             "keys": '["XBT/USD"]', "threshold": "0.2"},
                             orchestration_stack.env)
    assert checked.returncode == 0, checked.output
    with _client(orchestration_stack) as client:
        logs = "\n".join(_run_tree_logs(client, checked.flow_run_id))
        reported = re.search(r"'candles_1m__close': ([0-9.]+)", logs)
        assert reported, logs[-2000:]
        assert float(reported.group(1)) == pytest.approx(expected, abs=1e-4)
        assert "drift above 0.2" in logs and "requesting a retrain" in logs

        deadline, triggered = time.monotonic() + 120, list[FlowRun]()
        while not triggered and time.monotonic() < deadline:
            triggered = [r for r in client.read_flow_runs(
                limit=200, sort=FlowRunSort.START_TIME_ASC)
                if r.id not in seen and r.flow_id is not None
                and client.read_flow(r.flow_id).name == "retrain"]
            time.sleep(2)
        assert triggered, "no retrain run was started by the drift event"
        # the event's range: the training window before the drifted day, and the day
        assert triggered[0].parameters == {"start": "2018-05-09", "end": "2018-05-11"}
        _stop(client, triggered[0].id)


def test_consistency_below_its_threshold_fails_and_triggers_retrain(
        orchestration_stack: OrchestrationStack, retrained: FinishedRun) -> None:
    with _client(orchestration_stack) as client:
        seen = {r.id for r in client.read_flow_runs(limit=200, sort=FlowRunSort.START_TIME_ASC)}
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
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(not_any_=list(seen))),
                limit=20, sort=FlowRunSort.START_TIME_ASC) if
                r.parameters.get("end") == "2018-05-11" and r.flow_id is not None
                and client.read_flow(r.flow_id).name == "retrain"]
            time.sleep(2)
        assert triggered, "no retrain run was started by the consistency event"
        # the event's range: the checked days and the training window before them
        assert triggered[0].parameters == {"start": "2018-05-02", "end": "2018-05-11"}
        _stop(client, triggered[0].id)  # it would backfill 9 days


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
    # one commit replacing the day (the message: the newest commits, if not)
    assert DeltaTable(table).version() == version + 1, [
        {k: c.get(k) for k in ("version", "timestamp", "operation", "userMetadata",
                                "operationParameters")} for c in DeltaTable(table).history(3)]
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

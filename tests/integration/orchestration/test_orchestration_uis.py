"""The three UIs `braid up` prints, opened in Debian's chromium (headless, through Playwright):
Prefect shows the deployments and the finished retrain run, MLflow the registered model with
its `champion` alias, Feast the feature views."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import yaml
from playwright.sync_api import Page, expect, sync_playwright

from orchestration.deployments import deployments
from tests.integration.orchestration.conftest import FinishedRun, OrchestrationStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

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

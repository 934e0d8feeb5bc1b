"""`braid up` applies the checkout's Feast repository, idempotently: the Feast UI shows the
`braid` project with its views, and the registry `training_set(...)` and `braid api` read holds
the feature services, with no manual `feast apply`.

The repository is a copy of `feature_repo/` (its `.py` and profiles) in a temporary folder, so
the registry lands there rather than in the checkout's `var/feast/`. About 60-90 s on 2 cores:
the UI's start and two `feast apply` runs.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from feast import FeatureStore

from infra import stack
from infra.settings import StackSettings
from infra.testing import free_port
from serving.settings import FEATURE_REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_braid_up_applies_the_feature_repository_once_and_the_ui_shows_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("BRAID_FEAST_OFFLINE_ROOT", str(tmp_path / "offline"))
    settings = StackSettings(state_dir=tmp_path / "var", feast_ui_port=free_port(),
                             feast_repo=repo, services=["feast-ui"], die_with_parent=True,
                             health_timeout_s=240)
    try:
        assert stack.up(settings, create_topics=False) == ["feast-ui"]
        store = FeatureStore(repo_path=str(repo))
        assert {s.name for s in store.list_feature_services()} == {"markets_direction_v1",
                                                                    "sensors_alert_v1"}
        assert {"candles_1m", "indicators_1m", "sensor_sx"} <= {
            v.name for v in store.list_feature_views()}
        created = {v.name: v.created_timestamp for v in store.list_feature_views()}

        # the UI reads the registry that was applied (not Feast's placeholder "Project")
        deadline, projects = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            projects = _get(f"{settings.feast_ui_url}/projects-list.json")
            if any(p["id"] == "braid" for p in projects["projects"]):  # type: ignore[index]
                break
            time.sleep(2)
        assert any(p["id"] == "braid" for p in projects["projects"]), projects  # type: ignore[index]

        # a second `braid up` starts nothing and changes nothing in the registry
        assert stack.up(settings, create_topics=False) == []
        log = (tmp_path / "var" / "log" / "feast-apply.log").read_text()
        runs = log.split(f"--- feast -c {repo} apply")
        assert len(runs) == 3  # before the first run, the two runs
        assert "Created feature service markets_direction_v1" in runs[1]
        assert "No changes to registry" in runs[2] and "Created" not in runs[2]
        again = FeatureStore(repo_path=str(repo)).list_feature_views()
        assert {v.name: v.created_timestamp for v in again} == created
    finally:
        stack.down(settings)

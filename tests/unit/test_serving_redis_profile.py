"""The redis and gcp Feast profiles stop with one error naming BRAID_FEAST_REDIS when it is unset
or malformed, from Braid's commands and from `feast` itself (Feast alone: `KeyError: 'port'`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.redis_online_store import BraidRedisOnlineStoreConfig
from serving.settings import FEATURE_REPO
from serving.store import ServingError, open_store


@pytest.mark.parametrize("value", ["${BRAID_FEAST_REDIS}", "", "  "])
def test_an_unset_connection_string_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValidationError, match="BRAID_FEAST_REDIS is not set"):
        BraidRedisOnlineStoreConfig(connection_string=value)


@pytest.mark.parametrize("value", ["127.0.0.1", "localhost:port", "redis://127.0.0.1:6379/0"])
def test_a_connection_string_without_host_and_port_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="is not host:port"):
        BraidRedisOnlineStoreConfig(connection_string=value)


def test_feasts_own_connection_strings_are_accepted() -> None:
    config = BraidRedisOnlineStoreConfig(connection_string="127.0.0.1:16379,db=2,password=x")
    assert config.connection_string == "127.0.0.1:16379,db=2,password=x"


def test_open_store_without_a_redis_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRAID_FEAST_REDIS", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(ServingError, match=r"needs BRAID_FEAST_REDIS .*127\.0\.0\.1:16379"):
        open_store("redis")


def test_open_store_with_a_malformed_redis_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAID_FEAST_REDIS", "redis-host")
    with pytest.raises(ServingError) as raised:
        open_store("redis")
    assert "\n" not in str(raised.value)
    assert "BRAID_FEAST_REDIS='redis-host' is not host:port" in str(raised.value)


@pytest.mark.parametrize("profile", ["feature_store.redis.yaml", "feature_store.gcp.yaml"])
def test_the_feast_cli_names_the_unset_variable(profile: str, tmp_path: Path) -> None:
    feast = str(Path(sys.executable).with_name("feast"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BRAID_FEAST_REGISTRY":
           str(tmp_path / "registry.db"), "PYTHONPATH": str(FEATURE_REPO.parent)}
    done = subprocess.run([feast, "-f", profile, "plan"], cwd=FEATURE_REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "KeyError" not in done.stdout + done.stderr
    assert "BRAID_FEAST_REDIS is not set" in done.stdout + done.stderr

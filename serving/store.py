"""Open Braid's Feast store for a profile, with clear errors for what users get wrong."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from feast import FeatureService, FeatureStore
from feast.errors import FeatureServiceNotFoundException
from feast.repo_config import FeastConfigError
from pydantic import ValidationError

from serving.settings import FEATURE_REPO

PROFILES = {"local": "feature_store.yaml", "redis": "feature_store.redis.yaml",
            "gcp": "feature_store.gcp.yaml"}


def write_repo_config(repo: Path, project: str, online_store: str | None = None) -> Path:
    """Write `repo/feature_store.yaml` of a Feast repository over Braid's offline store
    (DuckDB over the Delta tables), with `online_store` (a YAML block; default: SQLite in the
    repo) and the registry in the repo; returns `repo`. For demos, benchmarks and tests that
    need a repository of their own."""
    repo.mkdir(parents=True, exist_ok=True)
    online = online_store or "online_store:\n  type: sqlite\n  path: online.db\n"
    (repo / "feature_store.yaml").write_text(
        f"project: {project}\nprovider: local\nregistry: registry.db\n{online}"
        "offline_store:\n  type: serving.offline_store.BraidDuckDBOfflineStore\n"
        "entity_key_serialization_version: 3\n")
    return repo


class ServingError(RuntimeError):
    """A serving request that cannot be answered; the message is one line for the user."""


def feast_redis_connection(url: str) -> str:
    """`redis://[:password@]host:port[/db]` -> Feast's `host:port,db=N[,password=...]`."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ServingError(f"not a Redis URL: {url!r} (redis://host:port/db)")
    parts = [f"{parsed.hostname}:{parsed.port or 6379}"]
    db = parsed.path.strip("/")
    if db:
        parts.append(f"db={int(db)}")
    if parsed.password:
        parts.append(f"password={parsed.password}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def open_store(profile: str = "local", repo_path: Path | str = FEATURE_REPO) -> FeatureStore:
    """The feature store of `repo_path` under `profile` (local, redis or gcp)."""
    if profile not in PROFILES:
        raise ServingError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    repo = Path(repo_path).resolve()
    yaml = repo / PROFILES[profile]
    if not yaml.exists():
        raise ServingError(f"no {yaml.name} in {repo}")
    if profile != "local" and not os.environ.get("BRAID_FEAST_REDIS"):
        # the yaml reads ${BRAID_FEAST_REDIS}; the local stack publishes REDIS_URL
        url = os.environ.get("REDIS_URL")
        if not url:
            raise ServingError(f"profile {profile} needs BRAID_FEAST_REDIS (host:port, e.g. "
                               "127.0.0.1:16379: the Redis of `braid up`, which prints the "
                               "line) or REDIS_URL (redis://host:port/0)")
        os.environ["BRAID_FEAST_REDIS"] = feast_redis_connection(url)
    try:
        return FeatureStore(repo_path=str(repo), fs_yaml_file=yaml)
    except FeastConfigError as error:
        raise ServingError(f"{yaml}: {_config_problem(error)}") from error


def _config_problem(error: FeastConfigError) -> str:
    """The first problem of Feast's configuration error, in one line."""
    cause = error.__context__ or error.__cause__
    if isinstance(cause, ValidationError) and cause.errors():
        first = cause.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg'].removeprefix('Value error, ')}"
    return str(error).splitlines()[0]


def feature_service(store: FeatureStore, name: str) -> FeatureService:
    """The registered feature service `name`, or one line saying what registers it."""
    try:
        return store.get_feature_service(name)
    except FeatureServiceNotFoundException as error:
        raise ServingError(
            f"feature service {name!r} does not exist in the registry of {store.repo_path}: "
            f"run `feast apply` there (`braid up` applies the checkout's feature_repo/)"
        ) from error

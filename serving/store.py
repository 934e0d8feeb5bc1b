"""Open Braid's Feast store for a profile, with clear errors for what users get wrong."""

from __future__ import annotations

from pathlib import Path

from feast import FeatureStore

from serving.settings import FEATURE_REPO

PROFILES = {"local": "feature_store.yaml", "redis": "feature_store.redis.yaml",
            "gcp": "feature_store.gcp.yaml"}


class ServingError(RuntimeError):
    """A serving request that cannot be answered; the message is one line for the user."""


def open_store(profile: str = "local", repo_path: Path | str = FEATURE_REPO) -> FeatureStore:
    """The feature store of `repo_path` under `profile` (local, redis or gcp)."""
    if profile not in PROFILES:
        raise ServingError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    repo = Path(repo_path).resolve()
    yaml = repo / PROFILES[profile]
    if not yaml.exists():
        raise ServingError(f"no {yaml.name} in {repo}")
    return FeatureStore(repo_path=str(repo), fs_yaml_file=yaml)

"""Defaults of the flows (prefix `BRAID_FLOW_`, or `.env`): what a scheduled run reads and writes.

A deployment's run may override each through its parameters; these are what a run without
parameters uses (the schedules). Relative paths resolve against the Braid checkout, so the served
flows read the same files whatever their working directory.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from serving.settings import FEATURE_REPO, PROJECT_ROOT, FeastSettings


class FlowSettings(BaseSettings):
    """Inputs, pairs, thresholds and the Spark master of the orchestrated jobs."""

    model_config = SettingsConfigDict(env_prefix="BRAID_FLOW_", env_file=".env", extra="ignore")

    #: Trade files the markets backfill reads (files, folders or globs; local or gs://).
    trade_inputs: list[str] = Field(default_factory=lambda: [
        "../shared/data/kraken-trades/XBTUSD_kraken_2018_trades.sorted.csv"])
    #: Pairs the markets flows backfill, train on and check.
    pairs: list[str] = Field(default_factory=lambda: ["XBT/USD"])
    #: Candle durations the markets backfill writes.
    durations: list[str] = Field(default_factory=lambda: ["1m", "1h"])
    #: The sensors archive root (`braid sensors archive`), local or gs://.
    sensor_archive: str = "var/archive"
    #: Spark master of local backfills.
    spark_master: str = "local[2]"
    #: The Feast repository and profile of materialization, consistency and training sets.
    feast_repo: str = str(FEATURE_REPO)
    feast_profile: str = "local"
    #: The consistency flow fails (and triggers `retrain`) below this match rate.
    consistency_threshold: float = 0.99
    #: A feature whose population stability index exceeds this has drifted (0.2: a major shift).
    psi_threshold: float = 0.2
    #: Days of history the training flow trains on (ending at the run's `end`).
    training_days: int = 7
    #: false: the deployments are served with their schedules paused (tests, a laptop).
    schedules_active: bool = True

    @field_validator("feast_repo")
    @classmethod
    def _absolute_repo(cls, value: str) -> str:
        """Relative: to the checkout (the served flows run in the stack's data folder)."""
        return value if Path(value).is_absolute() else str((PROJECT_ROOT / value).resolve())

    def resolve(self, path: str) -> str:
        """`path` made absolute against the checkout (gs:// and absolute paths unchanged)."""
        if "://" in path or Path(path).is_absolute():
            return path
        return str((PROJECT_ROOT / path).resolve())

    def resolved_inputs(self) -> list[str]:
        return [self.resolve(p) for p in self.trade_inputs]

    @staticmethod
    def offline_root() -> str:
        """The root of the Delta tables the backfills write and Feast reads."""
        return FeastSettings().table_uri("").rstrip("/")

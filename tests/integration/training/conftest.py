"""Fixtures of the training tests: a real MLflow server, and a Feast repo over Delta tables of
real 2018 Kraken trades (the serving tests' helpers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from deltalake import write_deltalake
from feast import FeatureStore

from infra import stack
from infra.settings import StackSettings
from infra.testing import free_port
from tests.conftest import start_stack
from tests.integration.serving.offline_tables import (
    TABLE_PARTITIONS,
    candle_tables,
    local_repo,
    with_day,
)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (SQLite, local artifacts) on a free port; its URI."""
    settings = StackSettings(
        die_with_parent=True,
        state_dir=tmp_path_factory.mktemp("stack-mlflow"),
        mlflow_port=free_port(),
        services=["mlflow"],
        # ≈13 s idle; over a minute when the machine's cores are busy (database migrations)
        health_timeout_s=300.0,
    )
    start_stack(settings)
    try:
        yield settings.mlflow_tracking_uri
    finally:
        stack.down(settings)


@pytest.fixture(scope="session")
def markets_store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """Feast over `candles` / `indicators` Delta tables of 3 days of real XBT/USD and ETH/USD
    trades (2018), written as the backfill writes them."""
    root: Path = tmp_path_factory.mktemp("training-offline")
    for name, table in zip(("candles", "indicators"), candle_tables(days=3), strict=True):
        write_deltalake(str(root / name), with_day(table),
                        partition_by=TABLE_PARTITIONS)
    return local_repo(tmp_path_factory.mktemp("training-repo"), root)

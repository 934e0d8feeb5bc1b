"""Fixtures of the serving tests: the offline tables and a Feast repo over them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from feast import FeatureStore

from tests.integration.serving.offline_tables import (
    TABLE_PARTITIONS,
    candle_tables,
    local_repo,
    with_day,
)


@pytest.fixture(scope="session")
def market_tables() -> tuple[pa.Table, pa.Table]:
    return candle_tables()


@pytest.fixture(scope="session")
def offline_root(tmp_path_factory: pytest.TempPathFactory,
                 market_tables: tuple[pa.Table, pa.Table]) -> Path:
    root = tmp_path_factory.mktemp("offline")
    for name, table in zip(("candles", "indicators"), market_tables, strict=True):
        write_deltalake(str(root / name), with_day(table),
                        partition_by=TABLE_PARTITIONS)
    return root


@pytest.fixture(scope="session")
def feast_store(tmp_path_factory: pytest.TempPathFactory, offline_root: Path
                ) -> FeatureStore:
    return local_repo(tmp_path_factory.mktemp("feature_repo"), offline_root)

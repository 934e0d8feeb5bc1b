"""The source registry builds every built-in source by name and accepts new ones."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from features.schemas.trade import TRADE_ARROW_SCHEMA
from streaming.sources import TradeSource, available_sources, create_source, register_source


def test_every_builtin_source_is_built_by_its_name() -> None:
    assert {"synthetic", "file", "kraken-ws", "kraken-rest"} <= set(available_sources())
    assert create_source("synthetic", count=10).name == "synthetic"
    assert create_source("kraken-ws", pairs=["BTC/USD"]).name == "kraken-ws"
    assert create_source("kraken-rest", pair="XBT/USD").name == "kraken-rest"


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="synthetic"):
        create_source("nope")


def test_a_registered_source_is_built_with_its_options() -> None:
    class Empty(TradeSource):
        name = "empty"

        def __init__(self, label: str) -> None:
            self.label = label

        def batches(self) -> Iterator[pa.Table]:
            yield TRADE_ARROW_SCHEMA.empty_table()

    register_source("empty", Empty)
    source = create_source("empty", label="x")
    assert isinstance(source, Empty) and source.label == "x"
    assert "empty" in available_sources()

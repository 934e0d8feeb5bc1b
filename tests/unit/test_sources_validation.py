"""The trades service's column-wise validation agrees with the Trade model, row by row."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pyarrow as pa
import pytest
from pydantic import ValidationError

from features.schemas.trade import TRADE_ARROW_SCHEMA, Trade
from features.schemas.trade import invalid_trade_rows as invalid_reasons
from streaming.sources.synthetic import SyntheticTradeSource
from streaming.trades_service import raw_row

GOOD: dict[str, Any] = {"pair": "XBT/USD", "price": 60_000.5, "volume": 0.25, "side": "buy",
                        "order_type": "limit", "trade_id": 42, "timestamp_ms": 1_700_000_000_000}

BAD_VALUES: list[tuple[str, Any, str]] = [
    ("pair", "", "pair must not be empty"),
    ("pair", "X" * 33, "at most 32"),
    ("pair", "XBT|USD", "'|'"),
    ("pair", None, "pair is missing"),
    ("price", 0.0, "price must be positive"),
    ("price", -1.0, "price must be positive"),
    ("price", math.nan, "price is not a finite number"),
    ("price", math.inf, "price is not a finite number"),
    ("price", 1.0000000000000001e101, "price is beyond 1e+100"),
    ("price", 1.7976931348623157e308, "price is beyond 1e+100"),
    ("volume", 0.0, "volume must be positive"),
    ("volume", 1e300, "volume is beyond 1e+100"),
    ("volume", math.nan, "volume is not a finite number"),
    ("volume", None, "volume is missing"),
    ("side", "b", "side must be one of"),
    ("order_type", "stop", "order_type must be one of"),
    ("trade_id", -1, "trade_id must be non-negative"),
    ("timestamp_ms", 0, "timestamp_ms must be positive"),
]


def table_of(rows: list[dict[str, Any]]) -> pa.Table:
    schema = pa.schema([f.with_nullable(True) for f in TRADE_ARROW_SCHEMA])
    return pa.Table.from_pylist(rows, schema=schema)


def trade_accepts(row: dict[str, Any]) -> bool:
    try:
        Trade(**row)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("field", "value", "reason"), BAD_VALUES,
                         ids=[f"{f}={v!r}"[:40] for f, v, _ in BAD_VALUES])
def test_a_row_the_trade_model_rejects_is_rejected_with_a_reason(
    field: str, value: Any, reason: str
) -> None:
    row = {**GOOD, field: value}
    assert not trade_accepts(row)
    got = invalid_reasons(table_of([GOOD, row, GOOD]))
    assert got[0] is None and got[2] is None
    assert reason in got[1]


def test_every_synthetic_trade_is_valid_and_encodes_like_trade_to_wire() -> None:
    table = next(SyntheticTradeSource(count=2_000, seed=9).batches())
    assert all(r is None for r in invalid_reasons(table))
    for row in table.to_pylist()[:200]:
        assert orjson.loads(orjson.dumps({"v": 1, **row})) == Trade(**row).to_wire()


def test_the_first_failing_rule_in_field_order_gives_the_reason() -> None:
    row = {**GOOD, "price": -1.0, "side": "x", "timestamp_ms": 0}
    assert invalid_reasons(table_of([row]))[0] == "price must be positive"


def test_raw_row_keeps_non_finite_numbers_readable_in_json() -> None:
    encoded = orjson.loads(orjson.dumps(raw_row({**GOOD, "price": math.nan, "volume": -math.inf})))
    assert encoded["price"] == "nan" and encoded["volume"] == "-inf"

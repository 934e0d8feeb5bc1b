"""The trade record: one executed trade on one pair, schema version 1.

On the wire (topic `trades`) a trade is a JSON object with exactly these fields plus
`"v": 1`. :class:`Trade` is the definition of a valid trade, one record at a time (what a
Python producer outside Braid can validate with, and what `Trade.to_wire` writes). Braid's own
readers never build a model per record: the trades service, the stream decoder and the Spark
backfill apply the same rules to whole columns (:func:`invalid_trade_rows`), whose bounds, sets
and lengths are read from :class:`Trade`'s fields below, so they cannot drift apart;
`tests/unit/test_sources_validation.py` holds the two equal, row by row.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

TRADE_SCHEMA_VERSION = 1

# "unknown" is for archives that never recorded it (the bitcoincharts dumps).
Side = Literal["buy", "sell", "unknown"]
OrderType = Literal["market", "limit", "unknown"]

TRADE_ARROW_SCHEMA = pa.schema(
    [
        pa.field("pair", pa.string(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("side", pa.string(), nullable=False),
        pa.field("order_type", pa.string(), nullable=False),
        pa.field("trade_id", pa.int64(), nullable=False),
        pa.field("timestamp_ms", pa.int64(), nullable=False),
    ]
)
TRADE_FIELDS = tuple(TRADE_ARROW_SCHEMA.names)
#: Largest price and volume accepted. A candle sums price * volume over its trades (its VWAP's
#: numerator): two factors near the float maximum overflowed it to inf, which left the candle
#: with a null VWAP (found by the hostile-input suite). Under 1e100 each, no sum of products
#: over any realistic number of trades comes near overflow; no market comes near the bound.
MAX_TRADE_MAGNITUDE = 1e100


class Trade(BaseModel):
    """One trade. `timestamp_ms` is the exchange's event time in epoch milliseconds (UTC)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pair: str = Field(min_length=1, max_length=32)
    price: float = Field(gt=0, le=MAX_TRADE_MAGNITUDE, allow_inf_nan=False)
    volume: float = Field(gt=0, le=MAX_TRADE_MAGNITUDE, allow_inf_nan=False)
    side: Side
    order_type: OrderType
    trade_id: int = Field(ge=0)
    timestamp_ms: int = Field(gt=0)

    @field_validator("pair")
    @classmethod
    def _pair_has_no_separator(cls, value: str) -> str:
        if "|" in value:
            raise ValueError("pair must not contain '|', the key separator")
        return value

    def to_wire(self) -> dict[str, object]:
        """The JSON object written to the `trades` topic."""
        return {"v": TRADE_SCHEMA_VERSION, **self.model_dump()}


def _bound(field: str, name: str) -> Any:
    """The value of constraint `name` (`le`, `max_length` ...) declared on Trade's `field`."""
    found = [getattr(m, name) for m in Trade.model_fields[field].metadata if hasattr(m, name)]
    if len(found) != 1:
        raise TypeError(f"Trade.{field} declares {len(found)} `{name}` constraints")
    return found[0]


# The column rules' constants, from the model (the one definition)
SIDES: tuple[str, ...] = get_args(Side)
ORDER_TYPES: tuple[str, ...] = get_args(OrderType)
MAX_PAIR_LENGTH: int = _bound("pair", "max_length")
if (_bound("price", "le"), _bound("volume", "le")) != (MAX_TRADE_MAGNITUDE, MAX_TRADE_MAGNITUDE):
    raise TypeError("Trade's price and volume bounds must be MAX_TRADE_MAGNITUDE")


def invalid_trade_reasons(
    price: np.ndarray, volume: np.ndarray, timestamp_ms: np.ndarray, trade_id: np.ndarray
) -> np.ndarray:
    """Column-wise version of :class:`Trade`'s numeric rules.

    Returns an object array with `None` for a valid row and a short reason otherwise.
    The categorical fields are checked where the engine decodes them.
    """
    reasons = np.full(len(price), None, dtype=object)
    beyond = f"beyond {MAX_TRADE_MAGNITUDE:g}"
    checks = (
        (~np.isfinite(price), "price is not a finite number"),
        (np.isfinite(price) & (price <= 0), "price must be positive"),
        (np.isfinite(price) & (price > MAX_TRADE_MAGNITUDE), f"price is {beyond}"),
        (~np.isfinite(volume), "volume is not a finite number"),
        (np.isfinite(volume) & (volume <= 0), "volume must be positive"),
        (np.isfinite(volume) & (volume > MAX_TRADE_MAGNITUDE), f"volume is {beyond}"),
        (timestamp_ms <= 0, "timestamp_ms must be positive"),
        (trade_id < 0, "trade_id must be non-negative"),
    )
    # Apply in reverse so the first failing rule's reason wins.
    for mask, reason in reversed(checks):
        reasons[mask] = reason
    return reasons


def invalid_trade_rows(table: pa.Table) -> np.ndarray:
    """Per row, ``None`` if :class:`Trade` accepts it, else the first failing rule's reason.

    The rules, in :class:`Trade`'s field order: every field present; pair 1-32 characters
    without ``|``; price and volume finite, positive and at most 1e100; side and order type
    from their sets; trade id non-negative; timestamp positive.
    """
    n = table.num_rows
    numeric = invalid_trade_reasons(
        price=_floats(table["price"]),
        volume=_floats(table["volume"]),
        timestamp_ms=_ints(table["timestamp_ms"]),
        trade_id=_ints(table["trade_id"]),
    )

    # the common case, a batch of valid trades, skips the per-row work: a rule whose mask is
    # all false changes nothing below
    numeric_failed = bool((numeric != None).any())  # noqa: E711 - elementwise
    none = np.zeros(n, dtype=bool)

    def numeric_rule(field: str) -> tuple[np.ndarray, np.ndarray]:
        if not numeric_failed:
            return none, numeric
        return np.array([r is not None and r.startswith(field) for r in numeric], bool), numeric

    def missing(name: str) -> np.ndarray:
        return _np(pc.is_null(table[name])) if table[name].null_count else none

    pair = pc.fill_null(table["pair"], "")
    length = np.asarray(pc.utf8_length(pair).to_numpy(zero_copy_only=False), dtype=np.int64)
    rules: list[tuple[np.ndarray, str | np.ndarray]] = [
        *((missing(name), f"{name} is missing") for name in TRADE_FIELDS),
        (length == 0, "pair must not be empty"),
        (length > MAX_PAIR_LENGTH, f"pair must be at most {MAX_PAIR_LENGTH} characters"),
        (_np(pc.match_substring(pair, "|")), "pair must not contain '|', the key separator"),
        numeric_rule("price"),
        numeric_rule("volume"),
        (~_np(pc.is_in(pc.fill_null(table["side"], ""), pa.array(SIDES))),
         f"side must be one of {', '.join(SIDES)}"),
        (~_np(pc.is_in(pc.fill_null(table["order_type"], ""), pa.array(ORDER_TYPES))),
         f"order_type must be one of {', '.join(ORDER_TYPES)}"),
        numeric_rule("trade_id"),
        numeric_rule("timestamp_ms"),
    ]
    reasons = np.full(n, None, dtype=object)
    for mask, reason in reversed(rules):  # the first failing rule wins
        if mask.any():
            reasons[mask] = reason[mask] if isinstance(reason, np.ndarray) else reason
    return reasons


def _np(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(column, 1.0).to_numpy(zero_copy_only=False), dtype=np.float64)


def _ints(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(column, 1).to_numpy(zero_copy_only=False), dtype=np.int64)

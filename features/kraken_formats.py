"""Kraken's trade formats, parsed into Braid's trade columns (`TRADE_ARROW_SCHEMA`).

Both engines read historical files through these functions, so a file means the same trades
to the stream replay and to the Spark backfill.

Formats:
- 2018 archive CSV: `time,price,volume,buy_or_sell,market_or_limit,misc` (float seconds, b/s, m/l)
- REST dump CSV: `price,volume,time,buy/sell,market/limit,miscellaneous`
- bitcoincharts CSV: `Time,Price,Amount` (integer seconds; no side, no order type)
- REST `/0/public/Trades` rows: `[price, volume, time, b|s, m|l, misc, trade_id]` (7 fields) or
  the older 6-field rows without `trade_id`.
Where a format has no trade id, :func:`features.trade_ids.derive_trade_ids` supplies one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePath
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from features.schemas.trade import TRADE_ARROW_SCHEMA
from features.trade_ids import derive_trade_ids, seconds_to_microseconds

_SIDE = {"b": "buy", "s": "sell"}
_ORDER_TYPE = {"m": "market", "l": "limit"}

# header -> (time column, price column, volume column, side column, order type column)
CSV_LAYOUTS: dict[tuple[str, ...], tuple[str, str, str, str | None, str | None]] = {
    ("time", "price", "volume", "buy_or_sell", "market_or_limit", "misc"): (
        "time", "price", "volume", "buy_or_sell", "market_or_limit",
    ),
    ("price", "volume", "time", "buy/sell", "market/limit", "miscellaneous"): (
        "time", "price", "volume", "buy/sell", "market/limit",
    ),
    ("Time", "Price", "Amount"): ("Time", "Price", "Amount", None, None),
}

_PAIR_IN_NAME = re.compile(r"^([A-Z]{2,5})(USD|EUR|USDT|GBP|CAD|JPY|CHF|XBT|ETH)_")


class UnknownFormatError(ValueError):
    """The file's header is not one of Kraken's trade formats."""


def pair_from_filename(path: str) -> str:
    """`XBTUSD_kraken_2018_trades.sorted.csv` -> `XBT/USD`."""
    name = PurePath(path).name
    match = _PAIR_IN_NAME.match(name)
    if match is None:
        raise ValueError(f"cannot tell the pair from file name {name!r}; pass it explicitly")
    return f"{match.group(1)}/{match.group(2)}"


def read_trades_csv(source: str | IO[bytes], pair: str | None = None) -> pa.Table:
    """Parse one Kraken trade CSV (any format above) into trade columns, in file order."""
    if pair is None:
        if not isinstance(source, str):
            raise ValueError("pair is required when reading from a stream")
        pair = pair_from_filename(source)
    table = pacsv.read_csv(
        source,
        convert_options=pacsv.ConvertOptions(
            column_types={"time": pa.float64(), "Time": pa.float64(), "price": pa.float64(),
                          "Price": pa.float64(), "volume": pa.float64(), "Amount": pa.float64()},
            strings_can_be_null=False,
        ),
    )
    header = tuple(table.column_names)
    if header not in CSV_LAYOUTS:
        raise UnknownFormatError(f"not a Kraken trade CSV header: {','.join(header)}")
    time_col, price_col, volume_col, side_col, type_col = CSV_LAYOUTS[header]
    n = table.num_rows
    side = _codes(table, side_col, _SIDE, n)
    order_type = _codes(table, type_col, _ORDER_TYPE, n)
    seconds = table[time_col].to_numpy(zero_copy_only=False).astype(np.float64)
    return trades_table(
        pair,
        price=table[price_col].to_numpy(zero_copy_only=False).astype(np.float64),
        volume=table[volume_col].to_numpy(zero_copy_only=False).astype(np.float64),
        seconds=seconds,
        side=side,
        order_type=order_type,
        trade_id=None,
    )


def parse_rest_trade_rows(rows: Sequence[Sequence[object]], pair: str) -> pa.Table:
    """Rows of a REST `/0/public/Trades` result (7- or 6-field) into trade columns."""
    if not rows:
        return TRADE_ARROW_SCHEMA.empty_table()
    widths = {len(r) for r in rows}
    if not widths <= {6, 7}:
        raise UnknownFormatError(f"Trades rows have {sorted(widths)} fields; expected 6 or 7")
    with_ids = widths == {7}
    if not with_ids and 7 in widths:
        raise UnknownFormatError("a Trades page mixes 6- and 7-field rows")
    return trades_table(
        pair,
        price=np.array([float(r[0]) for r in rows]),  # type: ignore[arg-type]
        volume=np.array([float(r[1]) for r in rows]),  # type: ignore[arg-type]
        seconds=np.array([float(r[2]) for r in rows]),  # type: ignore[arg-type]
        side=np.array([_SIDE.get(str(r[3]), "unknown") for r in rows], dtype=object),
        order_type=np.array([_ORDER_TYPE.get(str(r[4]), "unknown") for r in rows], dtype=object),
        trade_id=np.array([int(r[6]) for r in rows], dtype=np.int64) if with_ids else None,  # type: ignore[call-overload]
    )


def trades_table(
    pair: str,
    *,
    price: np.ndarray,
    volume: np.ndarray,
    seconds: np.ndarray,
    side: np.ndarray,
    order_type: np.ndarray,
    trade_id: np.ndarray | None,
) -> pa.Table:
    """Assemble trade columns; event time is floored to milliseconds."""
    micros = seconds_to_microseconds(seconds)
    ids = derive_trade_ids(micros) if trade_id is None else trade_id
    return pa.table(
        {
            "pair": pa.array(np.full(len(price), pair, dtype=object), pa.string()),
            "price": pa.array(price, pa.float64()),
            "volume": pa.array(volume, pa.float64()),
            "side": pa.array(side, pa.string()),
            "order_type": pa.array(order_type, pa.string()),
            "trade_id": pa.array(ids, pa.int64()),
            "timestamp_ms": pa.array(np.floor_divide(micros, 1000), pa.int64()),
        },
        schema=TRADE_ARROW_SCHEMA,
    )


def _codes(table: pa.Table, column: str | None, mapping: dict[str, str], n: int) -> np.ndarray:
    if column is None:
        return np.full(n, "unknown", dtype=object)
    raw = pc.utf8_trim_whitespace(table[column].cast(pa.string()))
    values = np.asarray(raw.to_numpy(zero_copy_only=False), dtype=object)
    out = np.full(n, "unknown", dtype=object)
    for code, name in mapping.items():
        out[values == code] = name
    return out

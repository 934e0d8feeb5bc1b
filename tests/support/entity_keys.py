"""The Kafka key a producer gives a message, derived from its value, for tests that build
input batches by hand: keyed processors refuse a record whose key is not its entity's
(`features.entity_keys`)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from features.schemas.candle import record_key

UNKNOWN = b"k"  # a message whose entity cannot be read (garbage, broken fields)


def entity_key(value: bytes | None) -> bytes:
    """A sensor record's client; a candle's or indicator row's record key; a trade's pair."""
    try:
        row = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return UNKNOWN
    if not isinstance(row, dict):
        return UNKNOWN
    try:
        if "client" in row:
            return str(row["client"]).encode()
        if "window_ms" in row:
            return record_key(str(row["pair"]), int(row["window_ms"]),
                              int(row["window_start_ms"])).encode()
        return str(row["pair"]).encode()
    except (KeyError, TypeError, ValueError):
        return UNKNOWN


def entity_keys(values: Sequence[bytes | None]) -> list[bytes | None]:
    return [entity_key(v) for v in values]

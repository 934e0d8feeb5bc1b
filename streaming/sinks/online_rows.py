"""What a message on a feature topic becomes for the online store: an `OnlineRow`.

| input topic | kind | view | entity | event time |
|---|---|---|---|---|
| candles | `candles` | `candles_<duration>` | pair | window end |
| technical_indicators | `indicators` | `indicators_<duration>` | pair | window end |
| FA, FI, FD | `sensor_feature` | `sensor_fa` ... (`FA`, `FA_bin`) | client | reading time |
| SX, SY | `sensor_reading:SX` ... | `sensor_sx` ... (`SX`) | client | reading time |

A message that cannot become a row raises `InvalidRow`, whose text is the dead-letter reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from features.windows import format_duration


@dataclass(frozen=True)
class OnlineRow:
    """One row for the online store: its view, entity, event time (ms) and feature values.

    `position`: where the row's message lies in its topic-partition (its Kafka offset), for a
    view whose rows are processor outputs, where a later message at the same event time is a
    correction (`positioned`): of two rows at one event time the later position wins. -1 (raw
    readings): the first row of an event time stays. A (view, entity) is fed by one
    topic-partition (keyed outputs), so positions of its rows compare."""

    view: str
    entity_column: str
    entity: str
    event_ms: int
    values: Mapping[str, object]
    position: int = -1

    def supersedes(self, event_ms: int, position: int) -> bool:
        """Whether this row replaces a stored one at (`event_ms`, `position`): a later event
        time, or the same one at a later log position (both positioned)."""
        return self.event_ms > event_ms or (
            self.event_ms == event_ms and self.position >= 0 and self.position > position)


def positioned(kind: str) -> bool:
    """Whether rows of this kind carry their log position (see :class:`OnlineRow`): processor
    outputs do (candles, indicators, sensor features: the last message of an identity is its
    value); raw SX/SY readings do not (the first of an event time stays, as the batch layer's
    `sensor_readings` keeps the first to arrive)."""
    return not kind.startswith("sensor_reading:")


class InvalidRow(ValueError):
    """A message the sink cannot turn into an online row (the text is the dead-letter reason)."""


INT64_MAX = 2**63 - 1


def _int64(value: int, name: str) -> int:
    """An integer the store's Int64 columns hold. Checked here, on decoding, so that a row the
    store would refuse never competes with valid rows for "newest of its entity"."""
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise InvalidRow(f"schema: {name} is beyond the 64-bit integer range")
    return value


def _positive_int(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidRow(f"schema: {name} must be a positive integer")
    return _int64(value, name)


def _string(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRow(f"schema: {name} must be a non-empty string")
    return value


def _number(value: object, name: str) -> float:
    if value is None:
        return math.nan  # null on the topics is "not warmed up": NaN as offline, never 0
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidRow(f"schema: {name} must be a number")
    return float(value)


def _market_row(kind: str, obj: dict[str, Any]) -> OnlineRow:
    pair = _string(obj, "pair")
    view = f"{kind}_{format_duration(_positive_int(obj, 'window_ms'))}"
    end = _positive_int(obj, "window_end_ms")
    values = {k: (_int64(v, k) if isinstance(v, int) and not isinstance(v, bool)
                  else _number(v, k))
              for k, v in obj.items() if k not in ("pair", "window_ms")}
    return OnlineRow(view, "pair", pair, end, values)


def _sensor_feature_row(obj: dict[str, Any]) -> OnlineRow:
    name = _string(obj, "feature")
    value = _number(obj.get("value"), "value")
    bin_ = obj.get("bin")
    if not isinstance(bin_, int) or isinstance(bin_, bool):
        raise InvalidRow("schema: bin must be an integer")
    return OnlineRow(f"sensor_{name.lower()}", "client", _string(obj, "client"),
                     _positive_int(obj, "timestamp_ms"),
                     {name: value, f"{name}_bin": _int64(bin_, "bin")})


def _sensor_reading_row(sensor: str, obj: dict[str, Any]) -> OnlineRow:
    value = _number(obj.get("value"), "value")
    if not value.is_integer():
        raise InvalidRow(f"schema: {sensor} must be an integer category")
    return OnlineRow(f"sensor_{sensor.lower()}", "client", _string(obj, "client"),
                     _positive_int(obj, "timestamp_ms"), {sensor: _int64(int(value), sensor)})


def decode_row(kind: str, raw: bytes | None) -> OnlineRow:
    """The online row of one message of a topic of `kind` (see the module table)."""
    if not raw:
        raise InvalidRow("decode: empty message")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRow(f"decode: not JSON ({error.msg})") from error
    if not isinstance(obj, dict):
        raise InvalidRow("decode: not a JSON object")
    if kind in ("candles", "indicators"):
        return _market_row(kind, obj)
    if kind == "sensor_feature":
        return _sensor_feature_row(obj)
    if kind.startswith("sensor_reading:"):
        return _sensor_reading_row(kind.split(":", 1)[1], obj)
    raise ValueError(f"unknown sink kind {kind!r}")

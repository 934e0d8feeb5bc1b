"""Decode a micro-batch of `trades` messages into columns, rejecting bad ones with a reason.

Fast path: the whole batch goes through Arrow's JSON reader at once (C++). If that fails
(a message that is not JSON, a wrong type, an unknown field), every message is decoded on its
own so exactly the bad ones are rejected and the rest go on.

Besides the trade schema's rules, a trade whose event time lies more than the maximum skew ahead
of its message's Kafka timestamp is rejected (`features.event_time`), so it never moves its
pair's stream time; and a trade whose Kafka key is not its pair (null included) is rejected
(`features.entity_keys`): it is not on its pair's partition.

Window closure records (`features.schemas.window_closure`) share the topic: they are set apart
with their offsets (found by one search of the batch's bytes, so a batch without any costs
nothing more), and a malformed one is dead-lettered like a bad trade.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import BytesIO

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from features.entity_keys import first_reason, foreign_key_reasons
from features.event_time import (
    DEFAULT_MAX_EVENT_TIME_SKEW_MS,
    ahead_of_ingestion,
    skew_reason,
)
from features.schemas.trade import TRADE_ARROW_SCHEMA, TRADE_SCHEMA_VERSION, invalid_trade_rows
from features.schemas.window_closure import CLOSURE_TAG, WindowClosure, is_closure, parse_closure
from streaming.runtime.records import DeadLetter, InputBatch

# Nullable, so a missing field decodes to null and is rejected by row, not by batch.
WIRE_SCHEMA = pa.schema(
    [*(f.with_nullable(True) for f in TRADE_ARROW_SCHEMA), pa.field("v", pa.int64())]
)

_NUMERIC = tuple(f.name for f in WIRE_SCHEMA if not pa.types.is_string(f.type))
_INTEGER = tuple(f.name for f in WIRE_SCHEMA if pa.types.is_integer(f.type))


@dataclass
class DecodedTrades:
    """Valid trades of a batch as columns (arrival order) with their offsets."""

    table: pa.Table  # TRADE_ARROW_SCHEMA
    offsets: np.ndarray
    dead_letters: list[DeadLetter]
    closures: list[tuple[int, WindowClosure]] = field(default_factory=list)  # (offset, record)


def decode_trades(
    batch: InputBatch, max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS
) -> DecodedTrades:
    """The batch's valid trades and a dead letter for each other message. When the batch has
    its Kafka timestamps, a trade whose event time lies more than `max_event_time_skew_ms`
    ahead of its message's timestamp is invalid."""
    values = batch.values
    try:  # a message without a value (None) makes the join fail: no separate scan for None
        joined, has_none = b"\n".join(values), False  # type: ignore[arg-type]
    except TypeError:
        joined, has_none = b"", True
    if (has_none or CLOSURE_TAG in joined) and any(is_closure(v) for v in values):
        return _with_closures(batch, max_event_time_skew_ms)
    # Only well-formed-looking lines take the fast path: Arrow's JSON reader (pyarrow 25)
    # segfaults on a buffer that is just `null`, found by the fuzz test of this module.
    if has_none:
        return _decode_one_by_one(batch, max_event_time_skew_ms)
    if not _one_object_per_line(joined, len(values)):
        return _decode_one_by_one(batch, max_event_time_skew_ms)
    try:
        table = pajson.read_json(
            BytesIO(joined),
            read_options=pajson.ReadOptions(use_threads=False,
                                            block_size=max(1 << 20, len(joined) + 1)),
            parse_options=pajson.ParseOptions(
                explicit_schema=WIRE_SCHEMA, unexpected_field_behavior="error"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _decode_one_by_one(batch, max_event_time_skew_ms)
    if table.num_rows != len(values):  # e.g. a message holding two JSON objects
        return _decode_one_by_one(batch, max_event_time_skew_ms)
    # Arrow's JSON reader does not check that strings are UTF-8 (found by fuzzing): a buffer of
    # ASCII bytes without `\u` escapes can only hold ASCII strings, so the full validation
    # (about a tenth of the decoder's time) runs only for the others
    if not joined.isascii() or b"\\u" in joined:
        try:
            table.validate(full=True)
        except pa.ArrowInvalid:
            return _decode_one_by_one(batch, max_event_time_skew_ms)
    reasons = _row_reasons(table)
    _reject_ahead_of_ingestion(batch, np.arange(len(values)), table, reasons,
                               max_event_time_skew_ms)
    _reject_foreign_keys(batch, np.arange(len(values)), table, reasons)
    return _split(batch, table.select(TRADE_ARROW_SCHEMA.names), reasons)


def _with_closures(batch: InputBatch, max_event_time_skew_ms: int) -> DecodedTrades:
    """A batch holding closure records: the closures apart (in offset order), the rest decoded
    as trades; a malformed closure record is dead-lettered."""
    closures: list[tuple[int, WindowClosure]] = []
    letters: list[DeadLetter] = []
    trades = np.ones(len(batch), dtype=bool)
    for i, raw in enumerate(batch.values):
        if not is_closure(raw):
            continue
        trades[i] = False
        offset = int(batch.offsets[i])
        try:
            closures.append((offset, parse_closure(raw)))  # type: ignore[arg-type]
        except ValueError as exc:
            letters.append(DeadLetter(f"schema: {exc}", batch.topic, batch.partition, offset,
                                      batch.keys[i], raw))
    rest = InputBatch(
        batch.topic, batch.partition, batch.offsets[trades],
        [k for k, t in zip(batch.keys, trades, strict=True) if t],
        [v for v, t in zip(batch.values, trades, strict=True) if t],
        None if batch.timestamps is None else batch.timestamps[trades])
    decoded = (decode_trades(rest, max_event_time_skew_ms) if len(rest)
               else DecodedTrades(TRADE_ARROW_SCHEMA.empty_table(),
                                  np.empty(0, dtype=np.int64), []))
    decoded.dead_letters = sorted([*decoded.dead_letters, *letters], key=lambda d: d.offset)
    decoded.closures = closures
    return decoded


def _one_object_per_line(joined: bytes, count: int) -> bool:
    """Whether `count` messages joined by newlines are one line each, starting with `{` and
    ending with `}`: the newlines are exactly the joins, each between `}` and `{` (checked on
    the whole buffer at once with numpy: `bytes.count` of a 3-byte pattern cost ~0.9 us a
    message, a third of the decoder's time outside Arrow's reader)."""
    if not (joined[:1] == b"{" and joined[-1:] == b"}") or b"\r" in joined:
        return False
    buffer = np.frombuffer(joined, dtype=np.uint8)
    newlines = np.flatnonzero(buffer == _NEWLINE)
    return bool(len(newlines) == count - 1 and (buffer[newlines - 1] == _CLOSE).all()
                and (buffer[newlines + 1] == _OPEN).all())


_NEWLINE, _OPEN, _CLOSE = ord("\n"), ord("{"), ord("}")


def _reject_foreign_keys(batch: InputBatch, rows: np.ndarray, table: pa.Table,
                         reasons: np.ndarray) -> None:
    """Set the key reason (in place) on batch rows `rows` (the rows of `table`, in order) that
    are otherwise valid and whose Kafka key is not their pair."""
    if not len(rows):
        return
    keys = batch.keys if len(rows) == len(batch.keys) else [batch.keys[i] for i in rows.tolist()]
    reasons[rows] = first_reason(reasons[rows], foreign_key_reasons(keys, table["pair"], "pair"))


def _reject_ahead_of_ingestion(
    batch: InputBatch, rows: np.ndarray, table: pa.Table, reasons: np.ndarray, max_skew_ms: int
) -> None:
    """Set the skew reason (in place) on batch rows `rows` (the rows of `table`, in order) that
    are otherwise valid and lie too far ahead of their Kafka timestamp."""
    if batch.timestamps is None or not len(rows):
        return
    event = np.asarray(pc.fill_null(table["timestamp_ms"], 0).to_numpy(), dtype=np.int64)
    ahead = ahead_of_ingestion(event, batch.timestamps[rows], max_skew_ms)
    ahead &= reasons[rows] == None  # noqa: E711 - elementwise; the first broken rule wins
    if ahead.any():
        reasons[rows[ahead]] = "invalid: " + skew_reason(max_skew_ms)


def _row_reasons(table: pa.Table) -> np.ndarray:
    """Per-row rejection reason (None if valid): the trade schema's rules, plus the version."""
    rules = invalid_trade_rows(table)
    reasons = np.full(len(rules), None, dtype=object)
    failed = rules != None  # noqa: E711
    reasons[failed] = ["invalid: " + str(r) for r in rules[failed]]
    version = pc.fill_null(table["v"], -1).to_numpy()
    reasons[version != TRADE_SCHEMA_VERSION] = "schema: unsupported version"
    return reasons


def _decode_one_by_one(batch: InputBatch, max_skew_ms: int) -> DecodedTrades:
    """Slow path: find the undecodable messages one by one, then apply the batch rules."""
    reasons = np.full(len(batch), None, dtype=object)
    rows: list[dict[str, object]] = []
    decodable: list[int] = []
    for i, raw in enumerate(batch.values):
        reason, row = _decode_message(raw)
        if reason is not None:
            reasons[i] = reason
        else:
            rows.append(row)  # type: ignore[arg-type]
            decodable.append(i)
    table = pa.Table.from_pylist(rows, schema=WIRE_SCHEMA)
    reasons[decodable] = _row_reasons(table)
    _reject_ahead_of_ingestion(batch, np.asarray(decodable, dtype=np.int64), table, reasons,
                               max_skew_ms)
    _reject_foreign_keys(batch, np.asarray(decodable, dtype=np.int64), table, reasons)
    return _split_rows(batch, table.select(TRADE_ARROW_SCHEMA.names), reasons, decodable)


def _decode_message(raw: bytes | None) -> tuple[str | None, dict[str, object] | None]:
    if raw is None:
        return "decode: empty message", None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"decode: not JSON ({exc.msg})", None
    if not isinstance(obj, dict):
        return "decode: not a JSON object", None
    unknown = sorted(set(obj) - set(WIRE_SCHEMA.names))
    if unknown:
        return f"schema: unknown field {unknown[0]}", None
    # JSON true is no number, nor 1.5 an integer: Arrow would convert them to 1 (found by
    # the hostile-input tests)
    wrong = [name for name in _NUMERIC if type(obj.get(name)) is bool
             or (name in _INTEGER and type(obj.get(name)) is float)]
    if wrong:
        return f"schema: wrong type ({wrong[0]} is {type(obj[wrong[0]]).__name__})", None
    try:
        pa.Table.from_pylist([obj], schema=WIRE_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
        return f"schema: wrong type ({str(exc).splitlines()[0][:120]})", None
    return None, obj


def _split_rows(
    batch: InputBatch, table: pa.Table, reasons: np.ndarray, rows_of_table: list[int]
) -> DecodedTrades:
    """Like `_split`, for a table holding only the rows `rows_of_table` of the batch."""
    valid_in_table = np.asarray([reasons[i] is None for i in rows_of_table], dtype=bool)
    valid = reasons == None  # noqa: E711
    return DecodedTrades(
        table.filter(pa.array(valid_in_table)).cast(TRADE_ARROW_SCHEMA),
        batch.offsets[valid],
        _letters(batch, reasons),
    )


def _split(batch: InputBatch, table: pa.Table, reasons: np.ndarray) -> DecodedTrades:
    valid = reasons == None  # noqa: E711
    if valid.all():
        return DecodedTrades(table.cast(TRADE_ARROW_SCHEMA), batch.offsets, [])
    return DecodedTrades(
        table.filter(pa.array(valid)).cast(TRADE_ARROW_SCHEMA),
        batch.offsets[valid],
        _letters(batch, reasons),
    )


def _letters(batch: InputBatch, reasons: np.ndarray) -> list[DeadLetter]:
    return [
        DeadLetter(str(reasons[i]), batch.topic, batch.partition, int(batch.offsets[i]),
                   batch.keys[i], batch.values[i])
        for i in np.flatnonzero(reasons != None)  # noqa: E711
    ]

"""Decode a micro-batch of JSON messages into Arrow columns against a wire schema.

Fast path: the whole batch parsed as one JSON array by orjson (C), columns built by Arrow with
the schema's types. If that fails (a message that is not JSON, not exactly one object, a wrong
type, an unknown field), each message is decoded on its own with Arrow's JSON reader, so exactly
the bad ones get a reason and the rest go on. Field-level rules
(ranges, versions) are the caller's: the schema's fields should be nullable, so a missing field
decodes to null and can be rejected by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from itertools import repeat

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.json as pajson

from streaming.runtime.records import DeadLetter, InputBatch

# pyarrow imports pandas on its first conversion of a Python list (0.2-0.4 s, measured with
# py-spy inside a sensor window processor's first poll under load): paid here, at import, so a
# processor's first batch does not wait for it
pa.array(["import pandas now"], type=pa.string())


@dataclass
class DecodedJson:
    """All rows of a batch (undecodable ones as nulls) and a reason per row (None = decoded)."""

    table: pa.Table
    reasons: np.ndarray  # object: None or "decode: ..."


def _read(data: bytes, schema: pa.Schema) -> pa.Table:
    return pajson.read_json(
        BytesIO(data),
        read_options=pajson.ReadOptions(use_threads=False, block_size=max(1 << 20, len(data) + 1)),
        parse_options=pajson.ParseOptions(explicit_schema=schema,
                                          unexpected_field_behavior="error"),
    )


def decode_json_batch(batch: InputBatch, schema: pa.Schema) -> DecodedJson:
    values = batch.values
    table = _fast(values, schema) if values else None
    if table is not None:
        return DecodedJson(table, np.full(len(values), None, dtype=object))
    return _one_by_one(values, schema)


def _fast(values: list[bytes | None], schema: pa.Schema) -> pa.Table | None:
    """All messages as one JSON array; None unless every one is an object with known fields
    of the right types (missing fields become nulls)."""
    try:
        rows = orjson.loads(b"[" + b",".join(values) + b"]")  # type: ignore[arg-type]
    except (orjson.JSONDecodeError, TypeError):  # TypeError: a message without a value
        return None
    if len(rows) != len(values):  # a message held more than one value
        return None
    # every message an object with known fields only (map and set in C: this runs per row)
    if set(map(type, rows)) != {dict} or not set().union(*rows) <= set(schema.names):
        return None
    columns = {}
    for f in schema:
        column = list(map(dict.get, rows, repeat(f.name)))
        try:
            kinds = set(map(type, column))
            if bool in kinds and not pa.types.is_boolean(f.type):
                return None  # JSON true is no number (Arrow would convert it to 1)
            if pa.types.is_integer(f.type):
                if float in kinds:  # nor is 1.5 an integer (Arrow would truncate it)
                    return None
                if kinds == {int}:  # via numpy: pa.array(ints, type=...) is slow on small lists
                    ints = pa.array(np.array(column, dtype=np.int64))
                    columns[f.name] = ints if f.type == pa.int64() else ints.cast(f.type)
                    continue
            columns[f.name] = pa.array(column, type=f.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            return None
    return pa.table(columns, schema=schema)


def _one_by_one(values: list[bytes | None], schema: pa.Schema) -> DecodedJson:
    rows: list[dict[str, object] | None] = []
    reasons = np.full(len(values), None, dtype=object)
    for i, raw in enumerate(values):
        if raw is None or not raw.strip():
            reasons[i] = "decode: empty message"
        elif b"\n" in raw.strip():
            reasons[i] = "decode: more than one line"
        elif (reason := _not_an_object(raw)) is not None:
            # checked before Arrow's reader: it segfaults on a message that is just `null`
            # and does not check that strings are UTF-8 (both found by the hostile-input tests)
            reasons[i] = reason
        else:
            try:
                table = _read(raw, schema)
                if table.num_rows == 1:
                    rows.append(table.to_pylist()[0])
                    continue
                reasons[i] = "decode: not exactly one JSON object"
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                reasons[i] = f"decode: {str(exc).splitlines()[0][:200]}"
        rows.append(None)
    filled = [r if r is not None else dict.fromkeys(schema.names) for r in rows]
    return DecodedJson(pa.Table.from_pylist(filled, schema=schema), reasons)


def _not_an_object(raw: bytes) -> str | None:
    """Why `raw` is not one JSON object (None if it is)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"decode: not JSON ({exc.msg})"
    return None if type(obj) is dict else "decode: not exactly one JSON object"


def dead_letters(batch: InputBatch, reasons: np.ndarray, skip_below: int = -1) -> list[DeadLetter]:
    """Dead letters for the rows with a reason (offsets below `skip_below` were sent before)."""
    return [
        DeadLetter(str(reasons[i]), batch.topic, batch.partition, int(batch.offsets[i]),
                   batch.keys[i], batch.values[i])
        for i in np.flatnonzero(reasons != None)  # noqa: E711 - elementwise
        if int(batch.offsets[i]) >= skip_below
    ]

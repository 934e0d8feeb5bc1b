"""Feature values of many rows -> one blob per row of Feast-serialized `Value`s, in numpy.

A row's blob is, for each feature of its view in order, a 2-byte big-endian length and the
serialized `feast.types.Value` (`feast_redis_format`); the Lua script of `redis_online_writer`
splits it into hash fields. Float64 and Int64 columns (every Braid feature today) are encoded a
whole column at a time; a column that holds anything else (a None in an Int64 column, a string, a
type without a fast encoder) goes value by value through `feast_redis_format`'s encoders, where a
value that does not fit its type rejects its row.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streaming.sinks import feast_redis_format as fmt

MAX_VALUE_BYTES = 0xFFFF
_VARINT_GROUPS = 10  # a 64-bit varint takes at most 10 bytes


@dataclass(frozen=True)
class Column:
    """Bytes of one feature for n rows: `data[i, :used[i]]` is row i's length and value."""

    data: npt.NDArray[np.uint8]
    used: npt.NDArray[np.int64]


def _with_length(payload: npt.NDArray[np.uint8], lengths: npt.NDArray[np.int64]) -> Column:
    n = payload.shape[0]
    data = np.empty((n, payload.shape[1] + 2), dtype=np.uint8)
    data[:, 0] = lengths >> 8
    data[:, 1] = lengths & 0xFF
    data[:, 2:] = payload
    return Column(data, lengths + 2)


def double_column(values: npt.NDArray[np.float64]) -> Column:
    """`double_val` Values; NaN is the empty Value (Feast's null)."""
    n = values.shape[0]
    payload = np.empty((n, 9), dtype=np.uint8)
    payload[:, 0] = 0x29
    payload[:, 1:] = values.astype("<f8").view(np.uint8).reshape(n, 8)
    return _with_length(payload, np.where(np.isnan(values), 0, 9).astype(np.int64))


def int64_column(values: npt.NDArray[np.int64]) -> Column:
    """`int64_val` Values (varints of the two's complement, as protobuf writes them)."""
    n = values.shape[0]
    unsigned = values.astype(np.int64).view(np.uint64)
    groups = np.empty((n, _VARINT_GROUPS), dtype=np.uint64)
    for g in range(_VARINT_GROUPS):
        groups[:, g] = unsigned >> np.uint64(7 * g)
    count = np.maximum(1, (groups != 0).sum(axis=1)).astype(np.int64)
    byte_values = (groups & np.uint64(0x7F)).astype(np.uint8)
    more = np.arange(_VARINT_GROUPS)[None, :] < (count - 1)[:, None]
    payload = np.empty((n, _VARINT_GROUPS + 1), dtype=np.uint8)
    payload[:, 0] = 0x20
    payload[:, 1:] = byte_values | (more.astype(np.uint8) << 7)
    return _with_length(payload, count + 1)


def bytes_column(encoded: Sequence[bytes | None]) -> Column:
    """Values already serialized, one per row (None: a rejected row, left empty)."""
    width = max((len(v) for v in encoded if v is not None), default=0)
    payload = np.zeros((len(encoded), width), dtype=np.uint8)
    lengths = np.zeros(len(encoded), dtype=np.int64)
    for i, value in enumerate(encoded):
        if value:
            payload[i, :len(value)] = np.frombuffer(value, dtype=np.uint8)
            lengths[i] = len(value)
    return _with_length(payload, lengths)


def encode_column(encoder: fmt.Encoder, values: list[object],
                  reasons: list[str | None], name: str) -> Column:
    """One feature's column: vectorized for clean Float64/Int64 columns, else value by value
    (a value its encoder refuses sets that row's reason)."""
    if encoder is fmt.encode_double:
        try:
            return double_column(np.asarray(values, dtype=np.float64))
        except (TypeError, ValueError):
            pass
    elif encoder is fmt.encode_int64 and all(type(v) is int for v in values):
        try:
            return int64_column(np.asarray(values, dtype=np.int64))
        except OverflowError:
            pass
    encoded: list[bytes | None] = []
    for i, value in enumerate(values):
        try:
            data = encoder(value)
        except ValueError as error:
            reasons[i] = reasons[i] or f"schema: {name} {error}"
            encoded.append(None)
            continue
        if len(data) > MAX_VALUE_BYTES:
            reasons[i] = reasons[i] or f"schema: {name} is over {MAX_VALUE_BYTES} bytes"
            encoded.append(None)
            continue
        encoded.append(data)
    return bytes_column(encoded)


def row_blobs(columns: list[Column]) -> list[bytes]:
    """Each row's columns' used bytes, concatenated in column order."""
    widths = [c.data.shape[1] for c in columns]
    data = np.hstack([c.data for c in columns])
    position = np.concatenate([np.arange(w) for w in widths])  # inside its own column
    column_of = np.repeat(np.arange(len(columns)), widths)
    used = np.stack([c.used for c in columns], axis=1)  # (rows, columns)
    mask = position[None, :] < used[:, column_of]
    flat = data[mask].tobytes()  # row-major: row 0's bytes, then row 1's, ...
    bounds = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).tolist()
    return [flat[a:b] for a, b in itertools.pairwise(bounds)]

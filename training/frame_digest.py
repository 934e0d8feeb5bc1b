"""One sha256 value per data frame, on a canonical form: two builds compare by one value.

The canonical form does not depend on how a frame happens to be laid out:

- **columns** in name order;
- **rows** in the order of the key columns (then of every other column, when the keys repeat);
  a frame's index is ignored;
- **dtypes** by kind, not width: booleans as one byte, integers as int64, floats as float64 (every
  NaN the same bits; a float column's null is NaN), times as int64 nanoseconds since the epoch in
  UTC (naive times are taken as UTC), anything else as UTF-8 text; every column's nulls as a
  mask. An integer column and a float column of equal values differ (so do `1` and `"1"`).

Each column is hashed with its name, kind and row count before its values, so moving a value
from one column to another, or a row to another position in the canonical order, changes the
digest. Values are compared bit for bit: 0.1 + 0.2 and 0.3 differ.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

#: Bumped when the canonical form changes (digests of different versions never compare equal).
DIGEST_VERSION = 1
_NAN = np.float64(np.nan)


def canonical_rows(frame: pd.DataFrame, keys: Sequence[str] = ()) -> pd.DataFrame:
    """`frame` with its columns in name order and its rows in canonical order (index 0..n-1)."""
    columns = sorted(frame.columns, key=str)
    unknown = [k for k in keys if k not in frame.columns]
    if unknown:
        raise ValueError(f"key columns {unknown} are not in the frame")
    order = list(keys)
    if not order or frame.duplicated(order).any():
        order += [c for c in columns if c not in order]
    if order:
        frame = frame.sort_values(order, kind="mergesort", na_position="last")
    return frame[columns].reset_index(drop=True)


def _kind_and_bytes(column: pd.Series) -> tuple[str, list[bytes]]:
    """The column's kind and its canonical bytes (null mask, then values)."""
    nulls = column.isna().to_numpy()
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        values = column.fillna(False).to_numpy(dtype=np.uint8)
        return "bool", [nulls.tobytes(), values.tobytes()]
    if pd.api.types.is_integer_dtype(dtype):
        values = column.fillna(0).to_numpy(dtype="<i8")
        return "int", [nulls.tobytes(), values.tobytes()]
    if pd.api.types.is_float_dtype(dtype):
        values = column.to_numpy(dtype="<f8", na_value=_NAN).copy()
        values[np.isnan(values)] = _NAN  # one NaN payload
        return "float", [values.tobytes()]
    if pd.api.types.is_datetime64_any_dtype(dtype):
        stamps = pd.to_datetime(column)
        if stamps.dt.tz is None:
            stamps = stamps.dt.tz_localize("UTC")
        nanos = stamps.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
        values = nanos.astype("int64").where(~nulls, 0).to_numpy(dtype="<i8")
        return "time", [nulls.tobytes(), values.tobytes()]
    text = pa.array([None if n else str(v) for v, n in zip(column.tolist(), nulls, strict=True)],
                    type=pa.large_string())
    offsets = np.frombuffer(text.buffers()[1], dtype="<i8", count=len(text) + 1)
    data = text.buffers()[2]
    return "text", [nulls.tobytes(), (offsets - offsets[0]).tobytes(),
                    b"" if data is None else data.to_pybytes()[offsets[0]:offsets[-1]]]


def frame_digest(frame: pd.DataFrame, keys: Sequence[str] = ()) -> str:
    """sha256 (hex) of `frame`'s canonical form (module docstring); `keys` give the row order."""
    canonical = canonical_rows(frame, keys)
    digest = hashlib.sha256(f"braid-frame-digest-v{DIGEST_VERSION}".encode())
    digest.update(struct.pack("<qq", len(canonical.columns), len(canonical)))
    for name in canonical.columns:
        kind, chunks = _kind_and_bytes(canonical[name])
        label = f"{name}\x00{kind}".encode()
        digest.update(struct.pack("<q", len(label)) + label)
        for chunk in chunks:
            digest.update(struct.pack("<q", len(chunk)))
            digest.update(chunk)
    return digest.hexdigest()

"""A record's Kafka key must be its entity's key, or the record is dead-lettered.

Every keyed processor keeps its per-entity state (a pair's open candles, a client's window) in
the operator of one partition, and relies on the producers' rule that an entity's records all
carry its key (`trades`: the pair; `candles` and `technical_indicators`: the record key
`pair|window_ms|window_start_ms`; the sensor topics: the client) and so all land on the
partition `streaming.partitioning.partition_for` picks for it. A record with another key, or
none, lands elsewhere: its entity's state is then split over two operators (two candles with
the same key for one window, each with part of the trades, the later silently replacing the
earlier on the compacted topic). Such a record is refused with a `key:` reason, which names the
key it carries and the one it should.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def foreign_key_reasons(keys: Sequence[bytes | None],
                        expected: Sequence[str | None] | pa.Array | pa.ChunkedArray,
                        entity: str) -> np.ndarray:
    """Per message (aligned with `keys`): None when its key is the UTF-8 of `expected` (or
    `expected` is null: the record is refused for another reason), else the `key:` reason.
    Compared as Arrow arrays (a batch of 10,000 in about 0.2 ms); reasons are built only for
    the messages that differ."""
    want = expected if isinstance(expected, pa.Array | pa.ChunkedArray) else pa.array(
        list(expected), pa.string())
    got = pa.array(list(keys), pa.binary())
    same = pc.fill_null(pc.equal(got, pc.cast(want, pa.binary())), False)
    differs = ~np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
    differs &= ~np.asarray(want.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    reasons = np.full(len(keys), None, dtype=object)
    if differs.any():
        wanted = want.to_pylist()
        for i in np.flatnonzero(differs).tolist():
            key = keys[i]
            held = "no key" if key is None else f"key {key.decode('utf-8', 'replace')!r}"
            reasons[i] = (f"key: the record has {held}, not its {entity}'s key "
                          f"{wanted[i]!r}, so it is not on its {entity}'s partition")
    return reasons


def first_reason(reasons: np.ndarray, more: np.ndarray) -> np.ndarray:
    """`reasons` with `more` filled in where there was none yet (the first broken rule wins)."""
    return np.where(reasons == None, more, reasons)  # noqa: E711 - elementwise

"""The frame digest depends on the values only: not on column order, row order, integer or float
widths or the index; any changed value, NaN place, name or kind changes it."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pandas as pd
import pytest

from training.frame_digest import canonical_rows, frame_digest


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "pair": ["XBT/USD", "ETH/USD", "XBT/USD", None],
        "event_timestamp": pd.to_datetime([1_525_800_000_000, 1_525_800_000_000,
                                           1_525_800_060_000, 1_525_800_060_000],
                                          unit="ms", utc=True),
        "close": [9_301.5, 752.25, np.nan, 0.1 + 0.2],
        "trades": np.array([12, 7, 0, 3], dtype=np.int64),
        "up": [True, False, False, True],
    })


KEYS = ["pair", "event_timestamp"]


def test_layout_does_not_change_the_digest() -> None:
    frame = _frame()
    digest = frame_digest(frame, KEYS)
    shuffled = frame.sample(frac=1.0, random_state=3)[["up", "close", "pair", "trades",
                                                       "event_timestamp"]]
    assert frame_digest(shuffled, KEYS) == digest
    assert frame_digest(frame.set_index(pd.Index([10, 11, 12, 13])), KEYS) == digest
    narrow = frame.astype({"trades": np.int32})
    assert frame_digest(narrow, KEYS) == digest
    # the same instants in another time zone, or naive in UTC
    assert frame_digest(frame.assign(event_timestamp=frame["event_timestamp"].dt.tz_convert(
        "Europe/Paris")), KEYS) == digest
    assert frame_digest(frame.assign(event_timestamp=frame["event_timestamp"].dt.tz_localize(
        None)), KEYS) == digest
    # a NaN is a NaN whatever its bits
    payload = np.array([0x7FF8_0000_0000_0001], dtype=np.uint64).view(np.float64)[0]
    assert np.isnan(payload)
    odd_nan = frame.copy()
    odd_nan.loc[2, "close"] = payload
    assert frame_digest(odd_nan, KEYS) == digest
    # without keys, every column orders the rows
    assert frame_digest(shuffled) == frame_digest(frame)


@pytest.mark.parametrize("change", [
    lambda f: f.assign(close=f["close"].replace(752.25, np.nextafter(752.25, 800.0))),
    lambda f: f.assign(close=f["close"].fillna(0.0)),
    lambda f: f.assign(trades=f["trades"].astype(np.float64)),
    lambda f: f.assign(up=f["up"].astype(np.int64)),
    lambda f: f.rename(columns={"close": "price"}),
    lambda f: f.assign(pair=f["pair"].fillna("")),
    lambda f: f.iloc[:3],
    lambda f: f.assign(event_timestamp=f["event_timestamp"] + pd.Timedelta(1, "us")),
    lambda f: f.drop(columns="up"),
], ids=["one-ulp", "nan-filled", "int-to-float", "bool-to-int", "renamed", "null-to-empty",
        "row-dropped", "one-microsecond", "column-dropped"])
def test_any_change_of_a_value_name_or_kind_changes_the_digest(change: object) -> None:
    frame = _frame()
    changed = change(frame)  # type: ignore[operator]
    assert frame_digest(changed, [k for k in KEYS if k in changed]) != frame_digest(frame, KEYS)


def test_keys_that_repeat_fall_back_to_every_column_for_the_order() -> None:
    frame = pd.DataFrame({"k": [1, 1, 2], "v": [3.0, 2.0, 1.0]})
    assert list(canonical_rows(frame, ["k"])["v"]) == [2.0, 3.0, 1.0]
    assert frame_digest(frame.iloc[::-1], ["k"]) == frame_digest(frame, ["k"])
    with pytest.raises(ValueError, match=r"key columns \['x'\] are not in the frame"):
        frame_digest(frame, ["x"])


def test_digest_of_a_small_frame_follows_the_documented_form_by_hand() -> None:
    """sha256 over a version label, (columns, rows), then per column in name order: the name and
    kind, and each part's length and bytes (null mask, little-endian values)."""
    frame = pd.DataFrame({"b": [2.5, 0.5], "a": [7, 3]})
    expected = hashlib.sha256(b"braid-frame-digest-v1")
    expected.update(struct.pack("<qq", 2, 2))
    # rows in order of "a" (the key): 3 then 7
    for label, parts in ((b"a\x00int", [bytes(2), struct.pack("<qq", 3, 7)]),
                         (b"b\x00float", [struct.pack("<dd", 0.5, 2.5)])):
        expected.update(struct.pack("<q", len(label)) + label)
        for part in parts:
            expected.update(struct.pack("<q", len(part)) + part)
    assert frame_digest(frame, ["a"]) == expected.hexdigest()

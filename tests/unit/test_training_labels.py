"""Markets labels: the pair's latest close at or before t + horizon, against a brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.markets_model import label_rows

MINUTE = 60_000


@pytest.mark.parametrize("horizon", [1, 3])
def test_labels_and_previous_moves_equal_a_row_by_row_lookup(horizon: int) -> None:
    rng = np.random.default_rng(0)
    parts = []
    for pair in ("A/USD", "B/USD", "C/USD"):
        # minutes with holes (no trade: no candle), few price levels (ties happen)
        t = np.sort(rng.choice(500, 300, replace=False)) * MINUTE + 1_600_000_000_000
        parts.append(pd.DataFrame({
            "pair": pair, "event_timestamp": pd.to_datetime(t, unit="ms", utc=True),
            "candles_1m__close": rng.integers(1, 5, 300).astype(float)}))
    frame = pd.concat(parts).sample(frac=1, random_state=1).reset_index(drop=True)
    got = label_rows(frame, "candles_1m__close", horizon, MINUTE)
    step = pd.Timedelta(minutes=horizon)
    expected = {}
    for i, row in frame.iterrows():
        same = frame[frame["pair"] == row["pair"]].sort_values("event_timestamp")
        at = row["event_timestamp"]
        if at + step > same["event_timestamp"].max() or at - step < same["event_timestamp"].min():
            continue  # horizon or look-back past the pair's data: no row
        later = same[same["event_timestamp"] <= at + step]["candles_1m__close"].iloc[-1]
        before = same[same["event_timestamp"] <= at - step]["candles_1m__close"].iloc[-1]
        now = row["candles_1m__close"]
        expected[i] = (int(later > now), int(now > before))
    assert sorted(got.index) == sorted(expected)
    assert {i: (got.loc[i, "label"], got.loc[i, "previous_up"]) for i in got.index} == expected

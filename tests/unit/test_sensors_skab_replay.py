"""Replay of the real SKAB series: one client per experiment file, declared sensor mapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest

from features.sensors.binning import learn_edges
from features.sensors.skab import DEFAULT_DIR, read_experiment, skab_events
from features.sensors.window_math import sort_readings, window_features

pytestmark = pytest.mark.skipif(not DEFAULT_DIR.exists(),
                                reason=f"SKAB data not found at {DEFAULT_DIR}")


def test_each_file_is_a_client_with_its_sz_series_and_anomaly_labels() -> None:
    path = DEFAULT_DIR / "valve1" / "1.csv"
    raw = pd.read_csv(path, sep=";")
    events = read_experiment(path)
    assert set(events["client"].to_pylist()) == {"skab-valve1-1"}
    sz = events.filter(pc.equal(events["sensor"], "SZ"))
    assert sz["value"].to_pylist() == raw["Volume Flow RateRMS"].tolist()
    assert sz["incident"].to_pylist() == (raw["anomaly"] > 0).tolist()
    first = pd.Timestamp(raw["datetime"][0], tz="UTC").value // 1_000_000
    assert sz["timestamp_ms"][0].as_py() == first
    sx = events.filter(pc.equal(events["sensor"], "SX"))["value"].to_numpy()
    assert set(np.unique(sx)) <= set(range(10))
    # independent discretisation: floor((current - 0) / 0.35), clipped to 0..9
    expected = np.clip(np.floor(raw["Current"].to_numpy() / 0.35), 0, 9)
    assert np.array_equal(sx, expected)


def test_replay_is_in_event_time_order_and_edges_can_be_learned_from_it() -> None:
    events = skab_events(limit_files=3)
    ts = events["timestamp_ms"].to_numpy()
    assert (np.diff(ts) >= 0).all()
    sz = events.filter(pc.equal(events["sensor"], "SZ"))
    codes = np.unique(sz["client"].to_numpy(zero_copy_only=False), return_inverse=True)[1]
    t, v = sz["timestamp_ms"].to_numpy(), sz["value"].to_numpy()
    order = sort_readings(codes, t, v)
    f = window_features(codes[order], t[order], v[order])
    edges = learn_edges("skab-1", f.fa, f.fi, f.fd)
    bins = edges.bin("FA", f.fa)
    assert bins.min() == 0 and bins.max() == 9  # the robust range spans the real values
    assert edges.ranges["FA"].low == np.quantile(f.fa, 0.005)

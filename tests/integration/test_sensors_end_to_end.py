"""Simulated clients -> SX, SY, SZ topics -> window features -> join -> predictions, on a real
broker, checked against an independent computation of the same features for a few clients, and
every event's final prediction against its training row."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from features.sensors.binning import DEFAULT_EDGES
from features.sensors.model import LogisticAlertModel
from features.sensors.simulator import SimulatorConfig, simulate
from streaming.pipelines.sensors import run_sensors_through_stream
from streaming.runtime.topic_reader import read_topic
from training.sensors_baseline import training_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW_S = 600.0
MODEL = LogisticAlertModel("e2e-1", intercept=-4.0, coefficients=(0.05, 0.3, 0.2, 0.05, 0.3))


def independent_features(ts_ms: np.ndarray, values: np.ndarray) -> list[tuple[float, ...]]:
    """FA, FI, FD per reading, straight from the definition, with plain numpy and a loop."""
    order = np.lexsort((values, ts_ms))
    # seconds since the first reading (epoch seconds would lose precision in differences)
    t, v = (ts_ms[order] - ts_ms.min()) / 1000.0, values[order]
    out: list[tuple[float, ...]] = []
    for i in range(len(t)):
        inside = (t > t[i] - WINDOW_S) & (t <= t[i])
        tw, vw = t[inside], v[inside]
        fi = float(np.trapezoid(vw, tw)) if len(vw) > 1 else 0.0
        fd = float((vw[-1] - vw[0]) / (tw[-1] - tw[0])) if tw[-1] > tw[0] else 0.0
        out.append((ts_ms[order][i], float(vw.mean()), fi, fd))
    return out


def uniform_bin(x: float, low: float, high: float) -> int:
    return int(min(9, max(0, np.floor((x - low) / ((high - low) / 10)))))


def test_simulated_clients_flow_to_predictions_with_correct_features(
    kafka_settings, unique_topic_prefix
) -> None:
    cfg = SimulatorConfig(clients=12, duration_ms=40 * 60_000, disorder_ms=2_000, seed=7,
                          incidents_per_hour=1.5)
    events = simulate(cfg)
    result = run_sensors_through_stream(events, kafka_settings, topic_prefix=unique_topic_prefix,
                                        grace_ms=5_000, partitions=4, model=MODEL,
                                        threshold=0.5)
    feats = result.features
    sz = events.filter(pc.equal(events["sensor"], "SZ"))
    assert feats.num_rows == sz.num_rows  # every SZ reading got its features, none was late
    assert read_topic(kafka_settings, result.topics.dead_letter, settle_s=0.5) == []

    for client in cfg.client_names()[:4]:
        mine = sz.filter(pc.equal(sz["client"], client))
        expected = independent_features(mine["timestamp_ms"].to_numpy(),
                                        mine["value"].to_numpy())
        got = feats.filter(pc.equal(feats["client"], client)).to_pydict()
        assert got["timestamp_ms"] == [e[0] for e in expected]
        for k, name in enumerate(("FA", "FI", "FD"), start=1):
            np.testing.assert_allclose(got[name], [e[k] for e in expected], rtol=1e-9,
                                       atol=1e-9)
            r = DEFAULT_EDGES.ranges[name]
            assert got[f"{name}_bin"] == [uniform_bin(x, r.low, r.high) for x in got[name]]

    preds = result.predictions
    assert preds.num_rows > 0
    assert set(preds["model_version"].to_pylist()) == {"e2e-1"}
    vectors = np.array(preds["vector"].to_pylist())
    z = MODEL.intercept + vectors @ np.array(MODEL.coefficients)
    np.testing.assert_allclose(preds["probability"].to_numpy(), 1 / (1 + np.exp(-z)), rtol=1e-12)
    assert preds["alert"].to_pylist() == (preds["probability"].to_numpy() >= 0.5).tolist()
    assert 0 < sum(preds["alert"].to_pylist()) < preds.num_rows  # incidents do raise alerts

    # each event's final prediction is the training row; the latest event of each client holds
    # its latest (event time) values of all five fields
    final = result.final_predictions()
    rows = training_rows(events, DEFAULT_EDGES, grace_ms=5_000, partitions=4)
    assert {k: p["vector"] for k, p in final.items()} == {
        (c, t, g): v.tolist() for c, t, g, v in zip(
            rows.clients, rows.timestamps_ms.tolist(), rows.triggers, rows.vectors,
            strict=True)}
    for client in cfg.client_names()[:4]:
        last = max((k for k in final if k[0] == client), key=lambda k: k[1])
        latest = []
        for sensor in ("SX", "SY"):
            s = events.filter(pc.and_(pc.equal(events["sensor"], sensor),
                                      pc.equal(events["client"], client))).to_pandas()
            latest.append(int(s.sort_values("timestamp_ms")["value"].iloc[-1]))
        last_sz = feats.filter(pc.equal(feats["client"], client)).to_pylist()[-1]
        latest += [last_sz["FA_bin"], last_sz["FI_bin"], last_sz["FD_bin"]]
        assert final[last]["vector"] == latest

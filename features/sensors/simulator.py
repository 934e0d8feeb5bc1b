"""A seeded simulator of N clients' sensors with labelled incidents (tests, benchmarks, training).

It lives in `features/` because both the speed layer (`braid sensors simulate`, the demo, the
benchmarks) and `training/` (simulated history) read it, and neither may import the other.

Model, per client (vectorized over clients with numpy):
- **SZ**, a float reading (think pump pressure), every `sz_interval_ms` on average (each gap
  drawn uniformly in [0.5, 1.5] x the interval): a client-specific level in [30, 60] plus AR(1)
  noise (coefficient 0.9, stationary sd ~2); during an **incident** it ramps up linearly by
  `incident_rise` units over the incident, then drops back;
- **SX**, the operating mode (categories 0..9), reported every `sx_interval_ms`: the client's
  usual mode (0..4), now and then a neighbouring one; during incidents often a high mode (6..9);
- **SY**, an alarm level (0..9), every `sy_interval_ms`: 0..2 normally, 4..9 during incidents;
- incidents start as a Poisson process (`incidents_per_hour` per client) and last 5 to 15
  minutes; every event carries `incident` (the label: the client is in an incident at its time);
- **arrival order**: each event arrives `U(0, disorder_ms)` after its event time; the table is
  in arrival order (stable by event time), so `disorder_ms > 0` gives out-of-order input whose
  disorder stays within that bound.

The same config gives the same events. Timestamps are epoch milliseconds (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

EVENT_SCHEMA = pa.schema([
    pa.field("sensor", pa.string(), nullable=False),
    pa.field("client", pa.string(), nullable=False),
    pa.field("timestamp_ms", pa.int64(), nullable=False),
    pa.field("value", pa.float64(), nullable=False),
    pa.field("incident", pa.bool_(), nullable=False),
])


@dataclass(frozen=True)
class SimulatorConfig:
    clients: int = 10_000
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    duration_ms: int = 3_600_000
    sz_interval_ms: int = 5_000
    sx_interval_ms: int = 60_000
    sy_interval_ms: int = 30_000
    incidents_per_hour: float = 0.5
    incident_rise: float = 30.0
    disorder_ms: int = 0
    seed: int = 0
    client_prefix: str = "c"

    def client_names(self) -> list[str]:
        width = max(6, len(str(self.clients - 1)))
        return [f"{self.client_prefix}{i:0{width}d}" for i in range(self.clients)]


def _times(rng: np.random.Generator, cfg: SimulatorConfig, interval: int) -> np.ndarray:
    """(clients, steps) event times: a random phase, then jittered gaps."""
    steps = max(1, cfg.duration_ms // interval)
    gaps = rng.uniform(0.5, 1.5, size=(cfg.clients, steps)) * interval
    gaps[:, 0] = rng.uniform(0, interval, size=cfg.clients)
    return cfg.start_ms + np.cumsum(gaps, axis=1).astype(np.int64)


def _incidents(rng: np.random.Generator, cfg: SimulatorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per client at most a few incidents: (starts, ends) as (clients, k) arrays, -1 = none."""
    hours = cfg.duration_ms / 3_600_000
    k = max(1, int(np.ceil(cfg.incidents_per_hour * hours * 3)))
    starts = cfg.start_ms + rng.uniform(0, cfg.duration_ms, size=(cfg.clients, k))
    happens = rng.uniform(size=(cfg.clients, k)) < (cfg.incidents_per_hour * hours / k)
    lengths = rng.uniform(5 * 60_000, 15 * 60_000, size=(cfg.clients, k))
    starts = np.where(happens, starts, -1).astype(np.int64)
    ends = np.where(happens, starts + lengths, -1).astype(np.int64)
    return starts, ends


def _progress(ts: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per event, how far into an incident it is (0..1), or -1 outside incidents."""
    out = np.full(ts.shape, -1.0)
    for j in range(starts.shape[1]):
        s, e = starts[:, j : j + 1], ends[:, j : j + 1]
        inside = (s >= 0) & (ts >= s) & (ts < e)
        out = np.where(inside, (ts - s) / np.maximum(e - s, 1), out)
    return out


def simulate(cfg: SimulatorConfig) -> pa.Table:
    """All events of all clients in arrival order (:data:`EVENT_SCHEMA`)."""
    rng = np.random.default_rng(cfg.seed)
    names = np.array(cfg.client_names(), dtype=object)
    starts, ends = _incidents(rng, cfg)
    level = rng.uniform(30, 60, size=cfg.clients)
    mode = rng.integers(0, 5, size=cfg.clients)

    sz_ts = _times(rng, cfg, cfg.sz_interval_ms)
    noise = np.empty(sz_ts.shape)
    state = rng.normal(0, 2.0, size=cfg.clients)
    shocks = rng.normal(0, 2.0 * np.sqrt(1 - 0.81), size=sz_ts.shape)
    for step in range(sz_ts.shape[1]):
        state = 0.9 * state + shocks[:, step]
        noise[:, step] = state
    sz_in = _progress(sz_ts, starts, ends)
    sz_value = level[:, None] + noise + np.where(sz_in >= 0, cfg.incident_rise * sz_in, 0.0)

    sx_ts = _times(rng, cfg, cfg.sx_interval_ms)
    sx_in = _progress(sx_ts, starts, ends) >= 0
    drift = rng.choice([-1, 0, 0, 0, 0, 0, 1], size=sx_ts.shape)
    sx_value = np.clip(mode[:, None] + drift, 0, 9)
    sx_value = np.where(sx_in & (rng.uniform(size=sx_ts.shape) < 0.7),
                        rng.integers(6, 10, size=sx_ts.shape), sx_value)

    sy_ts = _times(rng, cfg, cfg.sy_interval_ms)
    sy_in = _progress(sy_ts, starts, ends) >= 0
    sy_value = np.where(sy_in, rng.integers(4, 10, size=sy_ts.shape),
                        rng.integers(0, 3, size=sy_ts.shape))

    parts = []
    series = (("SX", sx_ts, sx_value, sx_in), ("SY", sy_ts, sy_value, sy_in),
              ("SZ", sz_ts, sz_value, sz_in >= 0))
    for sensor, ts, value, inside in series:
        keep = ts < cfg.start_ms + cfg.duration_ms
        rows = np.broadcast_to(np.arange(cfg.clients)[:, None], ts.shape)[keep]
        parts.append((np.full(int(keep.sum()), sensor, dtype=object), names[rows], ts[keep],
                      value[keep].astype(np.float64), inside[keep]))
    sensor_col, client_col, ts_col, value_col, label_col = (
        np.concatenate(c) for c in zip(*parts, strict=True))
    delay = rng.uniform(0, cfg.disorder_ms, size=len(ts_col)) if cfg.disorder_ms else 0
    order = np.argsort(ts_col + delay, kind="stable")
    return pa.table({
        "sensor": pa.array(sensor_col[order], pa.string()),
        "client": pa.array(client_col[order], pa.string()),
        "timestamp_ms": pa.array(ts_col[order], pa.int64()),
        "value": pa.array(value_col[order], pa.float64()),
        "incident": pa.array(label_col[order], pa.bool_()),
    }, schema=EVENT_SCHEMA)

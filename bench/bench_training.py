"""Training time and peak memory of the markets model on a year of 1-minute candles of 8 pairs.

    .venv/bin/python bench/bench_training.py             # 365 days x 8 pairs (4.2M candles)
    .venv/bin/python bench/bench_training.py --days 30   # a shorter history

Setup (not measured): synthetic 1-minute candles (a random walk per pair, every minute
present) and their indicators from `features.indicators.compute_indicators` (the code both
engines run), written as the backfill writes them (Delta, partitioned by pair, window_ms, day),
a Feast repo over them, and an MLflow server of the stack (`infra.stack`, free port, temp dir).

Measured, in a child process so its memory is the training's own: `train_markets` end to end
(Feast training set, labels, split, XGBoost with early stopping, evaluation, MLflow logging,
registration, promotion), the training-set step alone, and the child's peak resident memory
(VmHWM from /proc/self/status). Prints the figures and the load average (2 shared cores:
figures at a load above 2 are contended).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from deltalake import write_deltalake  # noqa: E402

from features.indicators import INDICATOR_COLUMNS, compute_indicators  # noqa: E402
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA  # noqa: E402

MINUTE = 60_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
PAIRS = ["XBT/USD", "ETH/USD", "SOL/USD", "ADA/USD", "XRP/USD", "DOT/USD", "LTC/USD",
         "LINK/USD"]


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def write_tables(root: Path, days: int, seed: int = 11) -> int:
    """Candles and indicators of every pair, one Delta commit per pair; rows written."""
    rng = np.random.default_rng(seed)
    n = days * 1440
    starts = T0 + np.arange(n, dtype=np.int64) * MINUTE
    day = pc.strftime(pc.cast(pa.array(starts), pa.timestamp("ms", "UTC")), "%Y-%m-%d")
    for k, pair in enumerate(PAIRS):
        close = 100 * (k + 1) * np.exp(np.cumsum(rng.normal(0, 8e-4, n)))
        opened = np.r_[close[0], close[:-1]]
        spread = np.abs(rng.normal(0, 4e-4, n)) * close
        volume = rng.lognormal(0, 1, n)
        series = {"open": opened, "high": np.maximum(opened, close) + spread,
                  "low": np.minimum(opened, close) - spread, "close": close, "volume": volume}
        base = {"pair": pa.array([pair] * n), "window_ms": np.full(n, MINUTE),
                "window_start_ms": starts, "window_end_ms": starts + MINUTE}
        candles = pa.table({**base, **series, "vwap": (opened + close) / 2,
                            "trade_count": rng.poisson(9, n) + 1}, schema=CANDLE_ARROW_SCHEMA)
        values = compute_indicators(series)
        indicators = pa.table({**base, "close": close,
                               **{c: values[c] for c in INDICATOR_COLUMNS}},
                              schema=INDICATOR_ARROW_SCHEMA)
        for name, table in (("candles", candles), ("indicators", indicators)):
            write_deltalake(str(root / name), table.append_column("day", day), mode="append",
                            partition_by=["pair", "window_ms", "day"])
    return n * len(PAIRS)


def feast_repo(repo: Path, offline_root: Path) -> None:
    from feast import FeatureStore

    from serving.feast_definitions import definitions
    from serving.settings import FeastSettings
    from serving.store import write_repo_config

    write_repo_config(repo, "bench_training")
    store = FeatureStore(repo_path=str(repo))
    entities, views, services = definitions(FeastSettings(offline_root=str(offline_root)))
    store.apply([*entities, *views, *services])


def child(repo: str, tracking_uri: str, days: int) -> None:
    """Runs in its own process: the measured training; prints one JSON line."""
    from feast import FeatureStore

    from training.markets_model import train_markets

    store = FeatureStore(repo_path=repo)
    end = T0 + days * 1440 * MINUTE
    started = time.perf_counter()
    result = train_markets(time.strftime("%Y-%m-%d", time.gmtime(T0 / 1000)),
                           time.strftime("%Y-%m-%dT%H:%M", time.gmtime(end / 1000)),
                           PAIRS, store=store, tracking_uri=tracking_uri)
    total = time.perf_counter() - started
    status = Path("/proc/self/status").read_text()
    hwm_kib = int(next(line for line in status.splitlines()
                       if line.startswith("VmHWM")).split()[1])
    print(json.dumps({
        "total_s": total, "peak_rss_mib": hwm_kib / 1024,
        **{k: v for k, v in result.metrics.items() if k.startswith("seconds_")},
        "rows_train": result.metrics["train_rows"], "rows_test": result.metrics["test_rows"],
        "best_rounds": result.metrics["best_rounds"],
        "test_roc_auc": result.metrics["test_roc_auc"],
        "persistence_test_roc_auc": result.metrics["persistence_test_roc_auc"],
        "test_accuracy": result.metrics["test_accuracy"],
        "majority_test_accuracy": result.metrics["majority_test_accuracy"],
        "version": result.version, "alias": result.alias}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365, help="Days of 1-minute candles.")
    parser.add_argument("--child", nargs=3, metavar=("REPO", "URI", "DAYS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0

    from infra import stack
    from infra.settings import StackSettings
    from infra.testing import free_port

    print(f"bench_training: {args.days} days x {len(PAIRS)} pairs of 1-minute candles; "
          f"load {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        rows = write_tables(work / "offline", args.days)
        feast_repo(work / "repo", work / "offline")
        print(f"setup: {rows:,} candles (+ indicators) written to Delta in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        settings = StackSettings(state_dir=work / "stack", mlflow_port=free_port(),
                                 services=["mlflow"], die_with_parent=True,
                                 health_timeout_s=300)
        stack.up(settings, create_topics=False)
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(work / "repo"),
                 settings.mlflow_tracking_uri, str(args.days)],
                capture_output=True, text=True, check=False,
                env={**os.environ, "PYTHONWARNINGS": "ignore"})
        finally:
            stack.down(settings)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        return 1
    figures = json.loads(lines[-1])
    rest = figures["total_s"] - sum(figures[k] for k in
                                    ("seconds_training_set", "seconds_labels", "seconds_fit"))
    print(f"train_markets end to end: {figures['total_s']:.1f} s: Feast training set "
          f"{figures['seconds_training_set']:.1f} s, labels {figures['seconds_labels']:.1f} s, "
          f"XGBoost fit {figures['seconds_fit']:.1f} s, evaluation + MLflow logging + "
          f"registration + promotion {rest:.1f} s")
    print(f"peak memory (VmHWM of the training process): {figures['peak_rss_mib']:.0f} MiB")
    print(f"rows: train {figures['rows_train']:,.0f}, test {figures['rows_test']:,.0f}; "
          f"trees {figures['best_rounds']:.0f}")
    print(f"test ROC AUC {figures['test_roc_auc']:.4f} (persistence "
          f"{figures['persistence_test_roc_auc']:.4f}); accuracy {figures['test_accuracy']:.4f} "
          f"(majority {figures['majority_test_accuracy']:.4f}) — a random walk: nothing to learn")
    print(f"load average at the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

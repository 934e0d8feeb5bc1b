"""Orchestration costs: `braid up` to a healthy stack (every service) and the stack's RSS; the
overhead of a Prefect flow run over calling the same function directly.

    .venv/bin/python bench/bench_orchestration.py [--repeat 3]

1. `braid up` (the CLI, as a user runs it) with every service on free ports in a temporary
   state dir: wall time until it returns (every service healthy, topics created), each
   service's startup time and RSS (process and children) as `braid status` reports them.
2. On Delta tables of one day of real 2018 XBT/USD and ETH/USD candles (the serving tests'
   helper) with a Feast repo over them: Feast's `materialize` of the markets views called
   directly; the `materialize` flow called in this process (reporting to the stack's Prefect
   server); and `prefect deployment run 'materialize/hourly' --watch` from a shell (the served
   process starts a flow-run subprocess). Medians of `--repeat` runs; the overhead is each
   median minus the direct one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deltalake import write_deltalake  # noqa: E402

from infra import stack  # noqa: E402
from infra.services import prefect  # noqa: E402
from infra.settings import KNOWN_SERVICES, StackSettings  # noqa: E402
from infra.testing import free_port  # noqa: E402
from tests.integration.serving.offline_tables import (  # noqa: E402
    candle_tables,
    local_repo,
    with_day,
)

BIN = Path(sys.executable).parent
START, END = datetime(2018, 5, 8, tzinfo=UTC), datetime(2018, 5, 9, tzinfo=UTC)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {load()} ({os.cpu_count()} cores)")
    base = Path(tempfile.mkdtemp(prefix="bench-orchestration-"))
    offline, repo = base / "offline", base / "repo"
    for name, table in zip(("candles", "indicators"), candle_tables(days=1), strict=True):
        write_deltalake(str(offline / name), with_day(table),
                        partition_by=["pair", "window_ms", "day"])
    store = local_repo(repo, offline)
    ports = {"BRAID_STACK_BROKER_PORT": free_port(), "BRAID_STACK_CONTROLLER_PORT": free_port(),
             "BRAID_STACK_GCS_PORT": free_port(), "BRAID_STACK_REDIS_PORT": free_port(),
             "BRAID_STACK_MLFLOW_PORT": free_port(), "BRAID_STACK_PREFECT_PORT": free_port(),
             "BRAID_STACK_PREFECT_FLOWS_PORT": free_port(),
             "BRAID_STACK_FEAST_UI_PORT": free_port()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()},
           "BRAID_STACK_STATE_DIR": str(base / "var"), "BRAID_STACK_HEALTH_TIMEOUT_S": "300",
           "BRAID_STACK_FEAST_REPO": str(repo), "BRAID_STACK_SERVICES": ",".join(KNOWN_SERVICES),
           "BRAID_FLOW_FEAST_REPO": str(repo), "BRAID_FLOW_SCHEDULES_ACTIVE": "false"}
    settings = StackSettings(state_dir=base / "var")
    try:
        began = time.perf_counter()
        up = subprocess.run([str(BIN / "braid"), "up"], env=env, capture_output=True, text=True)
        up_s = time.perf_counter() - began
        if up.returncode != 0:
            raise SystemExit(f"braid up failed:\n{up.stdout}\n{up.stderr}")
        rows = stack.status(settings)
        print(f"\n1. braid up -> healthy stack ({len(rows)} services): {up_s:.1f} s "
              f"(load {load()})")
        print(f"   {'service':<14} {'startup s':>9} {'RSS MiB':>8}")
        for row in rows:
            print(f"   {row.name:<14} {row.startup_s or 0:>9.1f} "
                  f"{(row.rss_bytes or 0) / 2**20:>8.0f}")
        total = sum(r.rss_bytes or 0 for r in rows) / 2**20
        print(f"   {'total':<14} {sum(r.startup_s or 0 for r in rows):>9.1f} {total:>8.0f}")

        recorded = stack.recorded_settings(settings)
        client_env = {**env, **prefect.client_env(recorded)}
        os.environ.update(prefect.client_env(recorded))
        from orchestration.flows.materialize import materialize

        views = ["candles_1m", "candles_1h", "indicators_1m", "indicators_1h"]
        direct = timed(lambda: store.materialize(START, END, feature_views=views), args.repeat)
        flow = timed(lambda: materialize(pipeline="markets", start=START, end=END,
                                         repo=str(repo)), args.repeat)
        deployment_cmd = [str(BIN / "prefect"), "deployment", "run", "materialize/hourly",
                          "--param", f"start={START.isoformat()}",
                          "--param", f"end={END.isoformat()}", "--watch"]

        def deployment() -> None:
            done = subprocess.run(deployment_cmd, env=client_env, capture_output=True,
                                  text=True)
            if done.returncode != 0:
                raise SystemExit(f"deployment run failed:\n{done.stdout}\n{done.stderr}")

        served = timed(deployment, args.repeat)
        print(f"\n2. materialize, 4 markets views, one day of 2 pairs (median of {args.repeat}; "
              f"load {load()})")
        reference = statistics.median(direct)
        for name, seconds in (("direct call (store.materialize)", direct),
                              ("flow run in-process", flow),
                              ("prefect deployment run --watch", served)):
            median = statistics.median(seconds)
            print(f"   {name:<34} {median:7.2f} s   overhead {median - reference:+7.2f} s   "
                  f"runs {json.dumps([round(s, 2) for s in seconds])}")
    finally:
        subprocess.run([str(BIN / "braid"), "down"], env=env, capture_output=True, text=True)
    print(f"\nload average at the end: {load()}")


if __name__ == "__main__":
    main()

"""Reliability figures: hostile records thrown at every processor, faults injected, and what the
checkers found (messages checked, lost, duplicated with a different value).

    .venv/bin/python bench/bench_reliability.py            # short run: 40 mixes per operator
    .venv/bin/python bench/bench_reliability.py --long     # 300 mixes per operator
    .venv/bin/python bench/bench_reliability.py --hostile-only   # no broker, no faults

Runs the reliability tests themselves (pytest, so the figures are those of the checks that
pass or fail) with `BRAID_RELIABILITY_REPORT` pointing at a temporary file that each test
appends its figures to (`tests/support/reliability_report.py`):

- hostile inputs, in process (`tests/unit/reliability`): generated mixes of valid and invalid
  wire records through the candle, indicator, markets-predictor, sensor-window and sensor-join
  operators (`--examples` mixes each);
- hostile inputs, as processes (`tests/integration/test_hostile_processes.py`): one mix each,
  every hostile kind of the formats once, through the real candle, sensor-window, join and
  archive processors on Apache Kafka, checked on the dead-letter topic; and the online sink on
  real Redis through Feast (`tests/integration/serving/test_online_sink_hostile.py`, half as
  many generated mixes);
- faults (`tests/integration/test_markets_effectively_once.py`,
  `test_sensors_effectively_once.py`, `test_sensors_archive.py`, `test_delivery_failures.py`):
  processors killed with -9 and SIGTERM at random moments, the broker killed and restarted,
  refused output deliveries; each run's every output message compared with an uninterrupted
  run's.

Prints per processor the records tried (hostile among them, and of how many kinds) and the
dead-letter reasons seen; per fault run the faults and the checker's figures; then totals. Exits
with pytest's status.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_IN_PROCESS = ["tests/unit/reliability"]
HOSTILE_PROCESSES = ["tests/integration/test_hostile_processes.py",
                     "tests/integration/serving/test_online_sink_hostile.py"]
FAULTS = [
    "tests/integration/test_markets_effectively_once.py",
    "tests/integration/test_sensors_effectively_once.py",
    "tests/integration/test_sensors_archive.py::"
    "test_kill_9_and_restart_archive_every_message_exactly_once",
    "tests/integration/test_delivery_failures.py",
]


def run_tests(targets: list[str], examples: int, workers: int, report: Path) -> int:
    env = {**os.environ, "BRAID_RELIABILITY_REPORT": str(report),
           "BRAID_RELIABILITY_EXAMPLES": str(examples),
           "PYSPARK_PYTHON": sys.executable}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-W", "ignore::RuntimeWarning", *targets]
    if workers > 1:
        command += ["-n", str(workers), "--dist", "loadfile"]
    print("$", " ".join(command[1:]), flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def summarize(lines: list[dict[str, Any]]) -> None:
    tried: dict[str, Counter[str]] = defaultdict(Counter)
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    keeps_all: set[str] = set()
    for line in lines:
        if line["type"] == "hostile":
            tried[line["processor"]].update(line["tried"])
            reasons[line["processor"]].update(line["reasons"])
            if line.get("keeps_all"):
                keeps_all.add(line["processor"])
    print("\n== hostile records, per processor ==")
    total_fed = total_hostile = total_dead = 0
    for processor in sorted(tried):
        kinds = tried[processor]
        hostile = {k: n for k, n in kinds.items() if not k.startswith("valid")}
        dead = sum(reasons[processor].values())
        fed, bad = sum(kinds.values()), sum(hostile.values())
        total_fed += fed
        if processor in keeps_all:
            print(f"{processor:28s} {fed:7d} records fed, {bad:6d} hostile of "
                  f"{len(hostile):3d} kinds, all archived once byte for byte (by design)")
            continue
        total_hostile, total_dead = total_hostile + bad, total_dead + dead
        print(f"{processor:28s} {fed:7d} records fed, {bad:6d} hostile of {len(hostile):3d} "
              f"kinds, {dead:6d} dead letters")
        for reason, n in reasons[processor].most_common(6):
            print(f"{'':30s}{n:6d}  {reason}")
        if len(reasons[processor]) > 6:
            print(f"{'':30s}   ... {len(reasons[processor]) - 6} more reasons")
    print(f"{'all':28s} {total_fed:7d} records fed, {total_hostile:6d} hostile to processors "
          f"that judge them, {total_dead:6d} dead letters (the tests check: every hostile "
          "record dead-lettered once, no valid one)")

    faults = [line for line in lines if line["type"] == "faults"]
    if not faults:
        return
    print("\n== faults injected and the checker over every output message ==")
    print(f"{'run':48s} {'faults':34s} {'checked':>8s} {'lost':>5s} {'diff':>5s} "
          f"{'unexp':>5s} {'same-dup':>8s}")
    totals: Counter[str] = Counter()
    injected: Counter[str] = Counter()
    for line in faults:
        described = ", ".join(f"{k} x{n}" for k, n in line["faults"].items())
        print(f"{line['scenario']:48s} {described:34s} {line['checked']:8d} {line['lost']:5d} "
              f"{line['different']:5d} {line['unexpected']:5d} "
              f"{line['identical_duplicates']:8d}")
        injected.update(line["faults"])
        totals.update({k: line[k] for k in ("checked", "lost", "different", "unexpected",
                                            "identical_duplicates")})
    print(f"faults injected and survived: {sum(injected.values())} "
          f"({', '.join(f'{k} x{n}' for k, n in sorted(injected.items()))})")
    print(f"messages checked: {totals['checked']}, lost: {totals['lost']}, "
          f"duplicated with a different value: {totals['different']}, unexpected: "
          f"{totals['unexpected']}, identical duplicates (allowed): "
          f"{totals['identical_duplicates']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--long", action="store_true",
                        help="300 generated mixes per in-process operator (default 40)")
    parser.add_argument("--examples", type=int, default=None,
                        help="generated mixes per in-process operator (overrides --long)")
    parser.add_argument("--hostile-only", action="store_true",
                        help="only the in-process hostile-input suite (no broker, no faults)")
    parser.add_argument("--workers", type=int, default=2,
                        help="pytest-xdist workers for the broker tests (default 2)")
    args = parser.parse_args(argv)
    examples = args.examples or (300 if args.long else 40)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "reliability.jsonl"
        report.touch()
        status = run_tests(HOSTILE_IN_PROCESS, examples, 1, report)
        if not args.hostile_only:
            status = run_tests(HOSTILE_PROCESSES + FAULTS, examples, args.workers,
                               report) or status
        lines = [json.loads(x) for x in report.read_text().splitlines() if x.strip()]
    summarize(lines)
    print(f"\n{examples} mixes per in-process operator; {time.perf_counter() - began:.0f} s; "
          f"pytest {'passed' if status == 0 else f'FAILED (status {status})'}; load average "
          f"at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return status


if __name__ == "__main__":
    sys.exit(main())

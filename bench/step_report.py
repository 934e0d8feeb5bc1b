"""The lines a benchmark prints from a processor's own step timings
(`streaming.runtime.step_timings.StepTimings.summary`): per phase, arrival lag, collections and
the slowest steps, shared by `bench_markets.py` and `bench_sensors.py`."""

from __future__ import annotations

import time
from typing import Any


def step_timing_lines(t: dict[str, Any], label: str, *, item: str = "input",
                      began_s: float | None = None, collections_note: str = "") -> list[str]:
    """`label`: what the processor is; `item`: what it consumes (singular, as in "trade");
    `began_s`: slowest steps shown as seconds after it (wall clock), else as clock times."""
    lines = [f"{label}: steps {t['steps']:,}, CPU {t['cpu_total_ms']:,.0f} ms, preempted "
             f"{t['preempted_total']:,}x; per phase total / max ms: " + ", ".join(
                 f"{p} {t['phase_total_ms'][p]:,.0f} / {t['phase_max_ms'][p]:.1f}"
                 for p in t["phase_total_ms"])]
    lag = t.get("arrival_lag_ms") or {}
    if lag:
        lines.append(f"  arrival lag (poll return - newest {item}'s CreateTime, per consuming "
                     f"step): p50 {lag['p50']:.1f} / p99 {lag['p99']:.1f} / max "
                     f"{lag['max']:.1f} ms over {lag['n']:,} steps")
    lines.append("  collections (gen: count, total ms, max ms): " + "; ".join(
        f"{g['generation']}: {g['count']}, {g['total_ms']:.1f}, {g['max_ms']:.2f}"
        for g in t["gc"]) + collections_note)
    lines.append("  slowest steps (ms: total = poll + process + tick + emit + checkpoint; gc "
                 "inside any):")
    for st in t["slowest_steps"][:5]:
        when = (f"at +{st['at'] - began_s:.3f} s" if began_s is not None
                else time.strftime("%H:%M:%S", time.localtime(st["at"])))
        lines.append(
            f"    {when}: {st['total_ms']:.1f} = {st['poll_ms']:.1f} + {st['process_ms']:.1f}"
            f" + {st['tick_ms']:.1f} + {st['emit_ms']:.1f} + {st['checkpoint_ms']:.1f}; gc "
            f"{st['gc_ms']:.1f} (gens {st['gc_generations']}); CPU {st['cpu_ms']:.1f} ms, "
            f"preempted {st['preempted']}x; {st['consumed']} {item}s")
    return lines

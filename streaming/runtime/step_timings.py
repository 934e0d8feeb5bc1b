"""Where a processor's time goes, step by step: the runtime's own timings.

`StreamProcessor.step()` is poll -> process -> tick -> emit -> checkpoint. A record that waits in
the processor (a closed window held back) waits in one of these phases, or in a garbage
collection inside one of them. `StepTimings` keeps, per phase, the total and the largest duration,
the collector's pauses by generation (`gc.callbacks`), and the slowest steps with their split, so
a latency tail can be named from the processor's own figures instead of guessed. The cost is a
few `perf_counter()` calls per step (tens of nanoseconds each) and two `getrusage` calls of the
processing thread: its CPU time and involuntary context switches in the step. A step whose wall
time far exceeds its CPU time, with involuntary switches, waited for a core (other processes ran),
not in Braid's code; one with CPU time close to its wall time did the work itself.

Each step that consumed also records its batch's **arrival lag**: the poll's return time minus the
newest consumed message's Kafka timestamp (CreateTime: when its producer called `produce()`), the
hop a record took to reach the processor (the producer's linger, the broker, the fetch, a poll
that ran late), apart from what the processor then did with it.

A step whose work (everything but the poll's wait) exceeds `slow_step_s`, or whose poll returned
more than `slow_step_s` after its timeout, is logged with its split (`slow step`).
"""

from __future__ import annotations

import gc
import heapq
import resource
import time
from dataclasses import dataclass, field
from typing import Any

PHASES = ("poll", "process", "tick", "emit", "checkpoint")


@dataclass(order=True)
class StepSplit:
    """One step: its total seconds, then seconds per phase and in collections (any phase)."""

    total_s: float
    phases: dict[str, float] = field(compare=False)
    gc_s: float = field(compare=False, default=0.0)
    gc_generations: tuple[int, ...] = field(compare=False, default=())
    consumed: int = field(compare=False, default=0)
    at: float = field(compare=False, default=0.0)  # wall clock at the step's end
    cpu_s: float = field(compare=False, default=0.0)  # the thread's CPU time in the step
    preempted: int = field(compare=False, default=0)  # involuntary context switches in it

    def as_dict(self) -> dict[str, Any]:
        return {"total_ms": round(self.total_s * 1000, 2),
                **{f"{p}_ms": round(s * 1000, 2) for p, s in self.phases.items()},
                "gc_ms": round(self.gc_s * 1000, 2), "gc_generations": list(self.gc_generations),
                "cpu_ms": round(self.cpu_s * 1000, 2), "preempted": self.preempted,
                "consumed": self.consumed, "at": self.at}


class StepTimings:
    """Per-phase totals and maxima, collector pauses, and the `keep` slowest steps."""

    def __init__(self, keep: int = 10) -> None:
        self.keep = keep
        self._installed = False
        self.reset()

    def reset(self) -> None:
        """Forget every step and collection so far (a benchmark's warm-up); collections go on
        being timed if they were."""
        self.steps = 0
        self.total_s = dict.fromkeys(PHASES, 0.0)
        self.max_s = dict.fromkeys(PHASES, 0.0)
        self.gc_count = [0, 0, 0]
        self.gc_total_s = [0.0, 0.0, 0.0]
        self.gc_max_s = [0.0, 0.0, 0.0]
        self.cpu_total_s = 0.0
        self.preempted_total = 0
        self.arrival_lag_ms: list[float] = []  # per consuming step, the last `lag_window`
        self.lag_window = 200_000
        self.slowest: list[StepSplit] = []  # a min-heap of the `keep` slowest steps
        self._gc_started = 0.0
        self._step_gc_s = 0.0
        self._step_gc_generations: list[int] = []

    # --- the collector ---------------------------------------------------------------------
    def install(self) -> None:
        """Time every collection from now on (`gc.callbacks`); idempotent."""
        if not self._installed:
            gc.callbacks.append(self._on_gc)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._on_gc)
            self._installed = False

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        generation = int(info.get("generation", 0))
        self.gc_count[generation] += 1
        self.gc_total_s[generation] += took
        self.gc_max_s[generation] = max(self.gc_max_s[generation], took)
        self._step_gc_s += took
        self._step_gc_generations.append(generation)

    # --- steps -----------------------------------------------------------------------------
    @staticmethod
    def usage() -> resource.struct_rusage:
        """The calling thread's resource usage (CPU time, context switches)."""
        return resource.getrusage(resource.RUSAGE_THREAD)

    def record(self, marks: list[float], consumed: int, before: resource.struct_rusage,
               after: resource.struct_rusage) -> StepSplit:
        """One step from its phase boundaries (`len(PHASES) + 1` perf_counter readings) and the
        thread's usage before and after it (`usage()`)."""
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        preempted = after.ru_nivcsw - before.ru_nivcsw
        self.cpu_total_s += cpu
        self.preempted_total += preempted
        phases = {p: marks[i + 1] - marks[i] for i, p in enumerate(PHASES)}
        self.steps += 1
        for phase, took in phases.items():
            self.total_s[phase] += took
            if took > self.max_s[phase]:
                self.max_s[phase] = took
        split = StepSplit(marks[-1] - marks[0], phases, self._step_gc_s,
                          tuple(self._step_gc_generations), consumed, time.time(), cpu,
                          preempted)
        self._step_gc_s = 0.0
        self._step_gc_generations = []
        if len(self.slowest) < self.keep:
            heapq.heappush(self.slowest, split)
        elif split.total_s > self.slowest[0].total_s:
            heapq.heapreplace(self.slowest, split)
        return split

    def record_arrival(self, polled_at_ms: float, newest_timestamp_ms: int) -> None:
        """The arrival lag of a step's batch (see the module docstring)."""
        lags = self.arrival_lag_ms
        if len(lags) >= self.lag_window:
            del lags[: self.lag_window // 2]
        lags.append(polled_at_ms - newest_timestamp_ms)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly figures: per phase total and max (ms), collections by generation
        (count, total and max ms), the slowest steps with their split (slowest first)."""
        return {
            "steps": self.steps,
            "phase_total_ms": {p: round(s * 1000, 1) for p, s in self.total_s.items()},
            "phase_max_ms": {p: round(s * 1000, 2) for p, s in self.max_s.items()},
            "cpu_total_ms": round(self.cpu_total_s * 1000, 1),
            "preempted_total": self.preempted_total,
            "gc": [{"generation": g, "count": self.gc_count[g],
                    "total_ms": round(self.gc_total_s[g] * 1000, 1),
                    "max_ms": round(self.gc_max_s[g] * 1000, 2)} for g in range(3)],
            "slowest_steps": [s.as_dict() for s in sorted(self.slowest, reverse=True)],
            "arrival_lag_ms": _percentiles(self.arrival_lag_ms),
        }


def _percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 (nearest rank), max and count of `values`; empty when there are none."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 1), "n": len(ordered)}

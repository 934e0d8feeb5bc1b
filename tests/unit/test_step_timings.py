"""The runtime's own timings: phases, the collector's pauses, CPU time, the slowest steps."""

from __future__ import annotations

import gc
import time

from streaming.runtime.step_timings import PHASES, StepTimings


def test_a_step_is_split_by_phase_and_the_slowest_are_kept_slowest_first() -> None:
    timings = StepTimings(keep=2)
    for process_ms in (5, 30, 10):
        before = timings.usage()
        # poll 1 ms, then process, tick, emit, checkpoint: the process phase holds the rest
        end = 0.001 + process_ms / 1000
        marks = [0.0, 0.001, end, end, end, end]
        timings.record(marks, consumed=process_ms, before=before, after=timings.usage())
    summary = timings.summary()
    assert summary["steps"] == 3
    assert [s["total_ms"] for s in summary["slowest_steps"]] == [31.0, 11.0]
    assert summary["slowest_steps"][0]["process_ms"] == 30.0
    assert summary["slowest_steps"][0]["poll_ms"] == 1.0
    assert summary["slowest_steps"][0]["consumed"] == 30
    assert summary["phase_total_ms"]["process"] == 45.0
    assert summary["phase_total_ms"]["poll"] == 3.0
    assert summary["phase_max_ms"]["process"] == 30.0
    assert set(summary["phase_total_ms"]) == set(PHASES)


def test_a_collection_inside_a_step_is_attributed_to_it_by_generation() -> None:
    timings = StepTimings()
    timings.install()
    try:
        before = timings.usage()
        start = time.perf_counter()
        gc.collect(2)
        end = time.perf_counter()
        split = timings.record([start, start, end, end, end, end], 0, before, timings.usage())
    finally:
        timings.uninstall()
    assert split.gc_generations == (2,)
    assert 0 < split.gc_s <= end - start
    assert timings.summary()["gc"][2]["count"] == 1
    after = timings.record([0.0] * 6, 0, before, timings.usage())
    assert after.gc_s == 0 and after.gc_generations == ()  # reset for the next step


def test_cpu_time_is_the_thread_s_own_so_a_sleep_counts_as_waiting() -> None:
    timings = StepTimings()
    before = timings.usage()
    start = time.perf_counter()
    time.sleep(0.05)
    end = time.perf_counter()
    split = timings.record([start, end, end, end, end, end], 0, before, timings.usage())
    assert split.total_s >= 0.05
    assert split.cpu_s < 0.02  # waited, did not compute


def test_arrival_lag_percentiles() -> None:
    timings = StepTimings()
    for lag in range(1, 101):
        timings.record_arrival(10_000.0 + lag, 10_000)
    lag = timings.summary()["arrival_lag_ms"]
    assert lag == {"p50": 51.0, "p99": 99.0, "max": 100.0, "n": 100}
    assert StepTimings().summary()["arrival_lag_ms"] == {}


def test_a_reset_forgets_the_steps_so_far_and_keeps_timing_collections() -> None:
    timings = StepTimings()
    timings.install()
    try:
        before = timings.usage()
        timings.record([0.0, 0.5, 0.5, 0.5, 0.5, 0.5], 7, before, timings.usage())
        timings.reset()  # e.g. a benchmark's warm-up is over
        gc.collect(0)
        before = timings.usage()
        timings.record([0.0, 0.001, 0.003, 0.003, 0.003, 0.003], 2, before, timings.usage())
    finally:
        timings.uninstall()
    summary = timings.summary()
    assert summary["steps"] == 1
    assert summary["phase_max_ms"]["poll"] == 1.0  # not the forgotten step's 500
    assert [s["consumed"] for s in summary["slowest_steps"]] == [2]
    assert summary["gc"][0]["count"] >= 1  # the collection after the reset was timed

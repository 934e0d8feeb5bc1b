"""A burst of bad input is one log line per interval, not one per record: the trades service's
rejected rows and the predictor's skipped rows are counted and summarised (the dead-letter
topic, or the counts, hold each one)."""

from __future__ import annotations

import numpy as np
import orjson
from structlog.testing import capture_logs

from streaming.processors.markets_predictor import PredictorConfig, PredictorGroup
from streaming.runtime.log_summary import IntervalSummary
from streaming.runtime.records import InputBatch
from tests.support.entity_keys import entity_keys
from tests.support.predictor_fakes import FakeModels, FakeOnlineStore

MINUTE = 60_000
END = 1_767_225_600_000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_events_within_an_interval_are_one_line_with_counts_and_the_latest_example() -> None:
    lines: list[tuple[str, dict[str, object]]] = []
    clock = Clock()
    summary = IntervalSummary(lambda event, **kw: lines.append((event, kw)), "rejected",
                              interval_s=10, clock=clock, tags={"source": "file"})
    for i in range(1_000):
        summary.add("invalid" if i % 4 else "schema", f"row {i}")
        clock.now += 0.005  # 1,000 rows in 5 s
    assert lines == []
    clock.now = 110.0  # the interval is over
    summary.add("invalid", "row 1000")
    assert lines == [("rejected", {"source": "file", "seconds": 10.0, "total": 1_001,
                                   "counts": {"schema": 250, "invalid": 751},
                                   "latest": {"schema": "row 996", "invalid": "row 1000"}})]
    summary.flush()  # nothing new: no line
    summary.add("schema", "row 1001")
    summary.flush()
    assert len(lines) == 2 and lines[1][1]["total"] == 1


def test_the_predictor_logs_a_summary_not_a_line_per_skipped_row() -> None:
    store = FakeOnlineStore()  # holds no candle: every row is missing once its wait is over
    group = PredictorGroup(PredictorConfig("predictions", MINUTE, feature_wait_ms=0), store,
                           FakeModels())
    rows = [{"pair": f"P{i % 7}/USD", "window_ms": MINUTE,
             "window_start_ms": END - MINUTE, "window_end_ms": END} for i in range(500)]
    values: list[bytes | None] = [orjson.dumps(r) for r in rows]
    with capture_logs() as logs:
        group.process_many([(0, InputBatch("indicators", 0, np.arange(500), entity_keys(values),
                                           values))], 0)
        group.skipped.flush()
    assert group.counts["missing"] == 500
    lines = [entry for entry in logs if "no prediction" in entry["event"]]
    assert len(lines) == 1
    assert lines[0]["counts"] == {"missing": 500} and lines[0]["total"] == 500
    assert "P" in lines[0]["latest"]["missing"]

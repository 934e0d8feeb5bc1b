"""The backfill's stage bar, with Spark's own progress inside the current stage.

A backfill has six stages; its longest (the read, the writes) run for minutes on a year of
trades while the bar stays at "4/6". This wraps the stage bar: a daemon thread asks Spark's
status tracker (`SparkContext.statusTracker()`, public API) twice a second for the active
stages and shows, after the stage's name, the tasks completed out of the tasks of the Spark
stages running now (`write candles: Spark tasks 13/21, 2 running`).
"""

from __future__ import annotations

import threading

from pyspark.sql import SparkSession
from tqdm import tqdm


class SparkStageBar:
    """A `tqdm` bar of stages whose postfix follows Spark's tasks while a stage runs."""

    def __init__(self, spark: SparkSession, bar: tqdm, interval_s: float = 0.5) -> None:
        self.bar = bar
        self.stage = ""
        self._tracker = spark.sparkContext.statusTracker()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not bar.disable:
            self._thread = threading.Thread(target=self._follow, args=(interval_s,),
                                            name="spark-progress", daemon=True)
            self._thread.start()

    def set_postfix_str(self, stage: str) -> None:
        """Start showing `stage` (the backfill's stage now running)."""
        self.stage = stage
        self.bar.set_postfix_str(stage)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.bar.close()

    def tasks(self) -> tuple[int, int, int] | None:
        """(completed, total, running) tasks of the Spark stages active now; None if none."""
        done = total = running = 0
        for stage_id in self._tracker.getActiveStageIds():
            info = self._tracker.getStageInfo(stage_id)
            if info is not None:
                done += int(info.numCompletedTasks)
                total += int(info.numTasks)
                running += int(info.numActiveTasks)
        return (done, total, running) if total else None

    def _follow(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                tasks = self.tasks()
            except Exception:  # the context is stopping: nothing more to show
                return
            if tasks is not None:
                done, total, running = tasks
                self.bar.set_postfix_str(f"{self.stage}: Spark tasks {done}/{total}, "
                                         f"{running} running")

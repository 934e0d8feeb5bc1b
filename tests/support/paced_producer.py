"""Produce a stream in small chunks at a steady pace while a test injects faults, then the rest
in one go: the stream flows through every fault however long the faults take (up to `chunks`
times `pace_s`), and no test waits for a stream longer than its faults.

The pace never pauses for long: a processor closes a quiet key's window on wall-clock idleness,
which an uninterrupted run of the same stream never does mid-stream."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class PacedProducer:
    """Calls `produce(i, i + 1)` for chunk i = 0, 1 ..., `pace_s` apart, until `faults_done` is
    set; then `produce(i, chunks)` for the rest at once. Run it in a thread (`start`, `join`);
    an exception in it is raised again by `join`. `started` is set once `started_chunks`
    chunks are produced."""

    produce: Callable[[int, int], object]  # chunks [start, stop) of the stream
    chunks: int
    pace_s: float
    started_chunks: int = 1
    faults_done: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    produced: int = 0
    #: How many chunks were produced when `faults_done` was set (`finish_faults`).
    produced_before_done: int | None = None
    _error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> PacedProducer:
        self._thread = threading.Thread(target=self._run, name="paced-producer", daemon=True)
        self._thread.start()
        return self

    def finish_faults(self) -> None:
        """The faults are done: produce the rest of the stream without pacing."""
        self.produced_before_done = self.produced
        self.faults_done.set()

    def _run(self) -> None:
        try:
            while self.produced < self.chunks:
                stop = self.chunks if self.faults_done.is_set() else self.produced + 1
                self.produce(self.produced, stop)
                self.produced = stop
                if self.produced >= self.started_chunks:
                    self.started.set()
                if self.produced < self.chunks:
                    self.faults_done.wait(self.pace_s)
        except BaseException as error:  # handed to join()
            self._error = error
        finally:
            self.started.set()

    def join(self, timeout_s: float = 600) -> None:
        assert self._thread is not None
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError("the producer did not finish")
        if self._error is not None:
            raise self._error

"""Where a training run is, for whoever shows it (the demo's spinner, `braid train`).

A run reports its steps through :func:`report` (the training set, the labels, every tenth
boosting round of the fit, the evaluation, the MLflow run, the registration, the promotion);
nothing is shown unless the caller installs a reporter with :func:`reporting`, for the code it
runs (a context variable: another thread or run is not affected). A year of one-minute candles
trains for a minute and a half; without this the caller saw nothing until the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import xgboost as xgb

Reporter = Callable[[str], None]

_REPORTER: ContextVar[Reporter | None] = ContextVar("braid_training_reporter", default=None)


@contextmanager
def reporting(reporter: Reporter) -> Iterator[None]:
    """Show every step of the training runs inside the block through `reporter`."""
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def report(step: str) -> None:
    """Tell the installed reporter (if any) which step the run is at."""
    reporter = _REPORTER.get()
    if reporter is not None:
        reporter(step)


def active() -> bool:
    return _REPORTER.get() is not None


class BoostingRounds(xgb.callback.TrainingCallback):
    """Reports the fit's boosting round every `every` rounds, and the validation log loss."""

    def __init__(self, total: int, every: int = 10) -> None:
        super().__init__()
        self.total = total
        self.every = every

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        if (epoch + 1) % self.every == 0:
            losses = [v for metrics in evals_log.values() for v in metrics.get("logloss", [])]
            loss = f", validation log loss {losses[-1]:.4f}" if losses else ""
            report(f"fit: {epoch + 1} of at most {self.total} boosting rounds{loss}")
        return False

"""Braid's structlog lines inside a flow run go to the run's Prefect log (the UI shows them).

Inside a flow or task run, `forward_logs_to_prefect()` makes structlog render each event as one
`key=value` line through the standard library's logger of its module (`batch.backfill` ...), and
a handler on Braid's top-level loggers hands each line to Prefect's run logger. So the
backfill's per-stage progress, the training's steps and the consistency report's facts appear in
the flow run's log beside Prefect's own lines. Outside a run the lines go to stderr only.
"""

from __future__ import annotations

import logging
import sys

import structlog
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

BRAID_LOGGERS = ("batch", "features", "serving", "training", "orchestration", "streaming")


class PrefectRunHandler(logging.Handler):
    """Hands a record to the current run's Prefect logger; outside a run, to stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        try:
            get_run_logger().log(record.levelno, message)
        except MissingContextError:
            sys.stderr.write(message + "\n")
        except Exception:
            self.handleError(record)


def forward_logs_to_prefect(level: int = logging.INFO) -> None:
    """Route structlog through stdlib logging to the run's log; idempotent."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    for name in BRAID_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False
        if not any(isinstance(h, PrefectRunHandler) for h in logger.handlers):
            logger.addHandler(PrefectRunHandler())

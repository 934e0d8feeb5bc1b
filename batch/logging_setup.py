"""Logging for jobs started by spark-submit (no `braid` CLI around them): structlog to stderr."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure_job_logging(level: str | None = None) -> None:
    """Console (or JSON with BRAID_LOG_JSON=1) structured logs; no-op if already configured."""
    if structlog.is_configured():
        return
    level_name = (level or os.environ.get("BRAID_LOG_LEVEL", "INFO")).upper()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if os.environ.get("BRAID_LOG_JSON") == "1"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level_name)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )

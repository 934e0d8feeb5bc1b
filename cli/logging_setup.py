"""Structured logging for every `braid` command (JSON with BRAID_LOG_JSON=1, else console)."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure_logging(level: str | None = None) -> None:
    level_name = (level or os.environ.get("BRAID_LOG_LEVEL", "INFO")).upper()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if os.environ.get("BRAID_LOG_JSON") == "1"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level_name)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )

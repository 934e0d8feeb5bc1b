"""Structured logging for every `braid` command (JSON with BRAID_LOG_JSON=1, else console)."""

from __future__ import annotations

import logging
import sys

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LogSettings(BaseSettings):
    """`BRAID_LOG_LEVEL` and `BRAID_LOG_JSON` (the environment, or `.env`)."""

    model_config = SettingsConfigDict(env_prefix="BRAID_LOG_", env_file=".env", extra="ignore")

    level: str = "INFO"
    json_lines: bool = Field(default=False, validation_alias="BRAID_LOG_JSON")


def configure_logging(level: str | None = None) -> None:
    """Braid's log lines to stderr at `level` (None: the configured one)."""
    settings = LogSettings()
    level_name = (level or settings.level).upper()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.json_lines
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

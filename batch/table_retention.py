"""How long the offline tables keep what an old version needs: Delta's two retention properties.

A training set records the Delta version of every table it read; a model's data can be rebuilt
as long as those versions are readable (`training.reproduce`). Delta takes a version away in two
ways, each bounded by a table property:

- `delta.deletedFileRetentionDuration`: `VACUUM` deletes data files removed from the table
  (a backfill replacing a range, `OPTIMIZE` compacting) longer ago than this;
- `delta.logRetentionDuration`: at a checkpoint, commit files older than this are deleted, and
  versions before the oldest checkpoint left can no longer be reconstructed.

Braid sets both on every table its backfills write (on creation, and with one `ALTER` commit when
the setting changed) from `BRAID_DELTA_DELETED_FILE_RETENTION` and `BRAID_DELTA_LOG_RETENTION`
(durations as `180d`, `12h`, `30m`, `1s`; default 180 days each), or `--deleted-file-retention`
/ `--log-retention` of the backfill job. Maintenance (`batch.table_maintenance`) vacuums with the
table's own retention, never a shorter one. A model trained more than the shorter of the two
ago may not be reproducible once the table was vacuumed or checkpointed since.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic_settings import BaseSettings, SettingsConfigDict

from features.windows import format_duration, parse_duration_ms

DELETED_FILE_RETENTION = "delta.deletedFileRetentionDuration"
LOG_RETENTION = "delta.logRetentionDuration"
DELETED_FILE_RETENTION_ENV = "BRAID_DELTA_DELETED_FILE_RETENTION"
LOG_RETENTION_ENV = "BRAID_DELTA_LOG_RETENTION"
DEFAULT_RETENTION = "180d"
_UNITS = (("days", 86_400), ("hours", 3_600), ("minutes", 60), ("seconds", 1))


def interval(ms: int) -> str:
    """A Delta interval property value for `ms` (whole seconds), in its largest exact unit:
    15552000000 -> 'interval 180 days'."""
    if ms <= 0 or ms % 1000:
        raise ValueError(f"a retention must be a positive whole number of seconds, got {ms} ms")
    seconds = ms // 1000
    for unit, size in _UNITS:
        if seconds % size == 0:
            return f"interval {seconds // size} {unit}"
    raise AssertionError("unreachable: seconds divide every amount")


class RetentionSettings(BaseSettings):
    """The configured durations (prefix `BRAID_DELTA_`, or `.env`)."""

    model_config = SettingsConfigDict(env_prefix="BRAID_DELTA_", env_file=".env",
                                      extra="ignore")

    deleted_file_retention: str = DEFAULT_RETENTION
    log_retention: str = DEFAULT_RETENTION


@dataclass(frozen=True)
class TableRetention:
    """The two retention durations, in milliseconds."""

    deleted_files_ms: int = parse_duration_ms(DEFAULT_RETENTION)
    log_ms: int = parse_duration_ms(DEFAULT_RETENTION)

    def __post_init__(self) -> None:
        interval(self.deleted_files_ms)  # validated: positive whole seconds
        interval(self.log_ms)

    @classmethod
    def parse(cls, deleted_files: str, log: str) -> TableRetention:
        """From two durations (`180d`, `12h`, `1s`)."""
        return cls(parse_duration_ms(deleted_files), parse_duration_ms(log))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TableRetention:
        """From `BRAID_DELTA_DELETED_FILE_RETENTION` / `BRAID_DELTA_LOG_RETENTION` (180d): the
        process environment or `.env` (`RetentionSettings`), or the mapping `environ`."""
        if environ is None:
            settings = RetentionSettings()
            return cls.parse(settings.deleted_file_retention, settings.log_retention)
        return cls.parse(environ.get(DELETED_FILE_RETENTION_ENV) or DEFAULT_RETENTION,
                         environ.get(LOG_RETENTION_ENV) or DEFAULT_RETENTION)

    def properties(self) -> dict[str, str]:
        """The Delta table properties that carry it."""
        return {DELETED_FILE_RETENTION: interval(self.deleted_files_ms),
                LOG_RETENTION: interval(self.log_ms)}

    def changed(self, configuration: Mapping[str, str | None]) -> dict[str, str]:
        """The properties a table with `configuration` must be given to carry this retention."""
        return {k: v for k, v in self.properties().items() if configuration.get(k) != v}

    def job_args(self) -> list[str]:
        """The backfill job's arguments that carry it (`batch/backfill_trades.py`)."""
        return ["--deleted-file-retention", format_duration(self.deleted_files_ms),
                "--log-retention", format_duration(self.log_ms)]

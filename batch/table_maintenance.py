"""Offline-table maintenance that never takes a version away earlier than the retention allows.

- :func:`optimize` compacts each partition's small files into larger ones (`OPTIMIZE`; one
  commit, the rows unchanged). The files it replaces are only marked removed: every earlier
  version still reads them, so training sets recorded at those versions rebuild the same.
- :func:`vacuum` deletes files removed longer ago than the table's
  `delta.deletedFileRetentionDuration`, after giving the table the configured retention
  (`batch.table_retention`) so a table written before the setting changed cannot be vacuumed
  with its older, shorter one. It never passes a shorter retention: delta-rs refuses one
  (`enforce_retention_duration`). Versions whose files it deleted can no longer be read.

Both go through delta-rs (no Spark): local tables, and `gs://` where delta-rs reaches the
bucket with its own client (not the local emulator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from deltalake import DeltaTable

from batch.table_retention import TableRetention

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Maintained:
    """What maintenance did to one table."""

    table: str
    #: The table's version after `OPTIMIZE` (None when it was not run).
    optimized_version: int | None
    files_compacted: int
    files_added: int
    #: Data files `VACUUM` deleted.
    files_deleted: int
    retention: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "optimized_version": self.optimized_version,
                "files_compacted": self.files_compacted, "files_added": self.files_added,
                "files_deleted": self.files_deleted, "retention": self.retention}


def optimize(uri: str) -> tuple[int, int, int]:
    """Compact the table's small files (per partition); (version, files removed, files added)."""
    table = DeltaTable(uri)
    metrics = table.optimize.compact()
    version = int(DeltaTable(uri).version())
    removed, added = int(metrics.get("numFilesRemoved", 0)), int(metrics.get("numFilesAdded", 0))
    log.info("delta table optimized", table=uri, version=version, files_removed=removed,
             files_added=added)
    return version, removed, added


def apply_retention(uri: str, retention: TableRetention) -> dict[str, str]:
    """Give the table `retention`'s properties where it holds other values (one commit);
    returns the properties it holds after."""
    table = DeltaTable(uri)
    changed = retention.changed(table.metadata().configuration)
    if changed:
        table.alter.set_table_properties(changed)
        log.info("delta table properties set", table=uri, properties=changed)
    return retention.properties()


def vacuum(uri: str, retention: TableRetention | None = None) -> int:
    """Delete the files the table removed longer ago than its retention (after giving it
    `retention`: None, the configured `TableRetention.from_env()`); the number deleted."""
    apply_retention(uri, retention or TableRetention.from_env())
    deleted = DeltaTable(uri).vacuum(dry_run=False, enforce_retention_duration=True)
    log.info("delta table vacuumed", table=uri, files_deleted=len(deleted))
    return len(deleted)


def maintain(uri: str, *, compact: bool = True, delete_removed: bool = True,
             retention: TableRetention | None = None) -> Maintained:
    """`OPTIMIZE` then `VACUUM` one table (either can be left out)."""
    settings = retention or TableRetention.from_env()
    version, removed, added = optimize(uri) if compact else (None, 0, 0)
    deleted = vacuum(uri, settings) if delete_removed else 0
    return Maintained(uri, version, removed, added, deleted, settings.properties())

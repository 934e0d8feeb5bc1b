"""Which versions of an offline Delta table can still be read, and a clear error when one cannot.

Delta keeps every version of a table readable (time travel) until two things take it away:

- `VACUUM` deletes data files that no version newer than `delta.deletedFileRetentionDuration`
  still needs: a version whose files were removed longer ago than that can no longer be read;
- log clean-up (at checkpoints) deletes commit files older than `delta.logRetentionDuration`:
  a version before the oldest remaining checkpoint can no longer be reconstructed.

:func:`require_version` checks both for a version before a training set reads it, and raises
:class:`TableVersionGone` naming the table, the version and the retention settings (the batch
layer's settings, `batch/README.md`), instead of a missing-file error half-way through a read.
"""

from __future__ import annotations

from deltalake import DeltaTable
from pyarrow import fs as pafs

from serving.store import ServingError

DELETED_FILE_RETENTION = "delta.deletedFileRetentionDuration"
LOG_RETENTION = "delta.logRetentionDuration"
#: Delta's own defaults, which apply when a table does not set the property.
DELTA_DEFAULTS = {DELETED_FILE_RETENTION: "interval 1 week", LOG_RETENTION: "interval 30 days"}
#: Where Braid's backfills take the retention from (`batch.table_retention`).
RETENTION_SETTINGS = "BRAID_DELTA_DELETED_FILE_RETENTION / BRAID_DELTA_LOG_RETENTION"


class TableVersionGone(ServingError):
    """A Delta table no longer holds a version (vacuumed files, cleaned-up log, never written)."""


def current_version(path: str) -> int:
    """The table's latest version; a table that cannot be opened is a ServingError."""
    try:
        return int(DeltaTable(path).version())
    except Exception as error:  # deltalake raises TableNotFoundError and friends
        raise ServingError(f"offline table {path} cannot be read: {error}") from error


def retention(path: str) -> dict[str, str]:
    """The table's file and log retention properties (Delta's defaults where it sets none)."""
    configuration = DeltaTable(path).metadata().configuration
    return {name: configuration.get(name) or f"{default} (Delta's default)"
            for name, default in DELTA_DEFAULTS.items()}


def _retention_text(path: str) -> str:
    settings = ", ".join(f"{k} = {v}" for k, v in retention(path).items())
    return f"the table's retention: {settings} (set by {RETENTION_SETTINGS}, batch/README.md)"


def _local_path(uri: str) -> str:
    return uri.removeprefix("file://")


def missing_files(table: DeltaTable) -> list[str]:
    """The data files `table` (a version of it) lists that are not in storage any more."""
    files = [_local_path(uri) for uri in table.file_uris()]
    if not files:
        return []
    filesystem, root = pafs.FileSystem.from_uri(_local_path(table.table_uri).rstrip("/") or "/")
    present = {info.path for info in
               filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
               if info.type == pafs.FileType.File}
    prefix = _local_path(table.table_uri).rstrip("/")
    return [f for f in files
            if (root.rstrip("/") + f[len(prefix):] if f.startswith(prefix) else f) not in present]


def require_version(path: str, version: int) -> None:
    """Raise :class:`TableVersionGone` unless `version` of the table at `path` can be read whole
    (its log reaches it and every data file it lists is still in storage)."""
    latest = current_version(path)
    if version > latest or version < 0:
        raise TableVersionGone(f"offline table {path} has no version {version} "
                               f"(its versions run to {latest})")
    if version == latest:
        return  # VACUUM never deletes the files of the latest version
    try:
        table = DeltaTable(path, version=version)
    except Exception as error:
        raise TableVersionGone(
            f"offline table {path} no longer holds version {version}: its log was cleaned up "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
            f"{_retention_text(path)}") from error
    gone = missing_files(table)
    if gone:
        example = gone[0].removeprefix(_local_path(table.table_uri).rstrip("/") + "/")
        raise TableVersionGone(
            f"offline table {path} no longer holds version {version}: {len(gone)} of its "
            f"{len(table.file_uris())} data files were removed (VACUUM), e.g. {example}; "
            f"{_retention_text(path)}")

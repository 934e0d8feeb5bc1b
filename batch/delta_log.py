"""Commits to a Delta table through delta-rs, for tables on local disk or on `gs://` via gcsfs.

delta-rs talks to local paths directly. For `gs://` it would use its own GCS client, which the
local GCS emulator cannot serve (it lacks the XML list API), so Braid commits through a **log
mirror**: the table's `_delta_log` is copied to a local folder with gcsfs, delta-rs commits there
(it reads only the log), and the new log files are uploaded. Data files are written straight to
`gs://` by the Spark tasks. A commit file that appeared on GCS meanwhile (a concurrent writer)
stops the upload with :class:`ConcurrentCommitError`; backfills of one table are meant to run one
at a time (the orchestrator's job).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from urllib.parse import unquote

import deltalake
import pyarrow as pa
import pyarrow.parquet as pq

from batch.object_storage import filesystem_for, is_gcs, join, normalize_uri

LOG_DIR = "_delta_log"


class ConcurrentCommitError(RuntimeError):
    """Another writer committed the same table version while this commit was prepared."""


def _bare(uri: str) -> str:
    return uri[len("gs://") :] if is_gcs(uri) else uri


@contextmanager
def local_table_uri(uri: str, *, for_commit: bool) -> Iterator[str]:
    """A local URI delta-rs can open for the table at `uri` (itself when local).

    For `gs://`, yields a folder holding a copy of the table's log; when `for_commit`, log files
    created inside the block are uploaded on a clean exit.
    """
    uri = normalize_uri(uri)
    if not is_gcs(uri):
        yield uri
        return
    fs = filesystem_for(uri)
    remote_log = _bare(join(uri, LOG_DIR))
    mirror = tempfile.mkdtemp(prefix="braid-delta-log-")
    local_log = os.path.join(mirror, LOG_DIR)
    os.makedirs(local_log)
    try:
        existing: set[str] = set()
        if fs.exists(remote_log):
            for path in fs.find(remote_log):
                name = path[len(remote_log) + 1 :]
                if name and "/" not in name:
                    fs.get_file(path, os.path.join(local_log, name))
                    existing.add(name)
        yield mirror
        if for_commit:
            created = sorted(set(os.listdir(local_log)) - existing)
            # commit files first, in version order; checkpoints and _last_checkpoint after
            created.sort(key=lambda n: (not n.endswith(".json"), n))
            for name in created:
                target = f"{remote_log}/{name}"
                if name.endswith(".json") and name[0].isdigit() and fs.exists(target):
                    raise ConcurrentCommitError(f"{uri}: version file {name} already exists")
                fs.put_file(os.path.join(local_log, name), target)
    finally:
        shutil.rmtree(mirror, ignore_errors=True)


def table_exists(uri: str) -> bool:
    uri = normalize_uri(uri)
    fs = filesystem_for(uri)
    log = _bare(join(uri, LOG_DIR))
    return bool(fs.exists(log)) and any(p.endswith(".json") for p in fs.ls(log, detail=False))


def commit_files(
    uri: str,
    *,
    schema: pa.Schema,
    partition_by: list[str],
    adds: list[deltalake.transaction.AddAction],
    replace: dict[str, list[str]] | None,
    run_id: str,
    properties: dict[str, str] | None = None,
) -> int:
    """Commit `adds`; with `replace`, first remove every file in the matching partitions.

    `replace` maps partition columns to the values to replace (a conjunction of `in` filters),
    so a backfill replaces exactly its pairs, durations and days. Creates the table when absent
    (with table `properties`; an existing table holding other values gets them in a commit of
    their own first). Returns the committed version.
    """
    from deltalake.transaction import CommitProperties, create_table_with_add_actions

    rows = sum(int(json.loads(add.stats).get("numRecords", 0)) for add in adds)
    commit = CommitProperties(
        custom_metadata={"braid_run_id": run_id, "braid_rows": str(rows)}
    )
    delta_schema = deltalake.Schema.from_arrow(schema)
    exists = table_exists(uri)
    with local_table_uri(uri, for_commit=True) as local:
        if not exists:
            create_table_with_add_actions(
                local, delta_schema, adds, mode="error", partition_by=partition_by,
                configuration=properties, commit_properties=commit,
            )
        else:
            table = deltalake.DeltaTable(local)
            configuration = table.metadata().configuration
            changed = {k: v for k, v in (properties or {}).items() if configuration.get(k) != v}
            if changed:
                table.alter.set_table_properties(changed)
            filters = [(col, "in", values) for col, values in (replace or {}).items()]
            table.create_write_transaction(
                list(adds),
                mode="overwrite" if replace is not None else "append",
                schema=delta_schema,
                partition_by=partition_by,
                partition_filters=filters or None,
                commit_properties=commit,
            )
        return int(deltalake.DeltaTable(local).version())


def commit_of_run(uri: str, run_id: str) -> tuple[int, int] | None:
    """(version, rows added) of the commit of run `run_id` (from its custom metadata)."""
    with local_table_uri(uri, for_commit=False) as local:
        for entry in deltalake.DeltaTable(local).history(50):
            if entry.get("braid_run_id") == run_id:
                return int(entry["version"]), int(entry.get("braid_rows", -1))
    return None


def version_of_run(uri: str, run_id: str) -> int | None:
    """The table version committed by run `run_id`."""
    found = commit_of_run(uri, run_id)
    return None if found is None else found[0]


def read_table(
    uri: str, filters: list[tuple[str, str, object]] | None = None, version: int | None = None
) -> pa.Table:
    """The table's current rows (partition columns included), optionally partition-filtered.

    `filters` are `(column, "=" | "in", value)` conjunctions on partition columns.
    """
    uri = normalize_uri(uri)
    if not is_gcs(uri):
        table = deltalake.DeltaTable(uri, version=version)
        schema = pa.schema(table.schema().to_arrow())
        return table.to_pyarrow_table(filters=_typed(schema, filters))
    fs = filesystem_for(uri)
    with local_table_uri(uri, for_commit=False) as local:
        table = deltalake.DeltaTable(local, version=version)
        arrow_schema = pa.schema(table.schema().to_arrow())
        partitions = table.metadata().partition_columns
        adds = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    pieces: list[pa.Table] = []
    for add in adds:
        values = {col: add[f"partition.{col}"] for col in partitions}
        if filters and not all(_matches(values.get(c), op, v) for c, op, v in filters):
            continue
        # add-action paths are URI-encoded relative paths (a `%2F` folder name is `%252F`)
        with fs.open(_bare(join(uri, unquote(add["path"]))), "rb") as handle:
            piece = pq.read_table(handle)
        for col in partitions:
            field = arrow_schema.field(col)
            piece = piece.append_column(field, pa.array([values[col]] * piece.num_rows, field.type))
        pieces.append(piece.select(arrow_schema.names).cast(arrow_schema))
    return pa.concat_tables(pieces) if pieces else arrow_schema.empty_table()


def _typed(
    schema: pa.Schema, filters: list[tuple[str, str, object]] | None
) -> list[tuple[str, str, object]] | None:
    """Filter values converted to the partition column's type (they may come as strings)."""
    if not filters:
        return filters

    def convert(field: pa.Field, value: object) -> object:
        if pa.types.is_integer(field.type):
            return int(value)  # type: ignore[call-overload]
        if pa.types.is_date(field.type) and isinstance(value, str):
            return date.fromisoformat(value)
        return value

    out: list[tuple[str, str, object]] = []
    for column, op, value in filters:
        field = schema.field(column)
        if op in ("in", "not in"):
            out.append((column, op, [convert(field, v) for v in value]))  # type: ignore[attr-defined]
        else:
            out.append((column, op, convert(field, value)))
    return out


def _matches(value: object, op: str, target: object) -> bool:
    """`=` and `in` on partition values, compared as their string form (as Delta stores them)."""
    text = str(value)
    if op == "=":
        return text == str(target)
    if op == "in":
        return text in {str(t) for t in target}  # type: ignore[attr-defined]
    raise ValueError(f"unsupported partition filter operator {op!r} (use = or in)")

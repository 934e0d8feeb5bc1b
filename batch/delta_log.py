"""Delta tables through delta-rs: reading them (local and `gs://`), and the commits of the former
delta-rs writer (local tables only).

Reads open the table where it is: delta-rs reaches `gs://` itself, through Google's credentials
or, with `STORAGE_EMULATOR_HOST` set, the local emulator (`object_storage.delta_storage_options`).
Every `gs://` table is written by delta-spark through Hadoop's GCS connector with Delta's GCS
log store, whose commit is one create-if-absent of the version file (a GCS precondition): two
writers of one version cannot both succeed. The delta-rs writer (`BRAID_DELTA_WRITER=delta-rs`,
kept for the benchmark) commits to local tables only.
"""

from __future__ import annotations

import json
from datetime import date

import deltalake
import pyarrow as pa

from batch.object_storage import delta_storage_options, is_gcs, normalize_uri


class RemoteCommitError(ValueError):
    """The delta-rs writer was asked to commit to a table that is not on local disk."""


def open_table(uri: str, version: int | None = None) -> deltalake.DeltaTable:
    """The Delta table at `uri` (local or `gs://`), at `version` (default: the latest)."""
    uri = normalize_uri(uri)
    return deltalake.DeltaTable(uri, version=version, storage_options=delta_storage_options(uri))


def table_exists(uri: str) -> bool:
    uri = normalize_uri(uri)
    return deltalake.DeltaTable.is_deltatable(uri, storage_options=delta_storage_options(uri))


def commit_files(
    uri: str,
    *,
    schema: pa.Schema,
    partition_by: list[str],
    adds: list[deltalake.transaction.AddAction],
    replace: dict[str, list[str]] | None,
    run_id: str,
    properties: dict[str, str] | None = None,
    kept: list[deltalake.transaction.AddAction] | None = None,
) -> int:
    """Commit `adds` to the local table at `uri`; with `replace`, first remove every file in
    the matching partitions.

    `replace` maps partition columns to the values to replace (a conjunction of `in` filters),
    so a backfill replaces exactly its pairs, durations and months; `kept`: files holding those
    partitions' rows the write does not replace, written again (committed, not counted as
    added rows). Creates the table when absent (with table `properties`; an existing table
    holding other values gets them in a commit of their own first). Returns the committed
    version.
    """
    from deltalake.transaction import CommitProperties, create_table_with_add_actions

    uri = normalize_uri(uri)
    if is_gcs(uri):
        raise RemoteCommitError(
            f"{uri}: the delta-rs writer commits to local tables only; gs:// tables are "
            "written by delta-spark (unset BRAID_DELTA_WRITER)")
    rows = sum(int(json.loads(add.stats).get("numRecords", 0)) for add in adds)
    adds = [*adds, *(kept or [])]  # rows of replaced partitions written again: not counted
    commit = CommitProperties(
        custom_metadata={"braid_run_id": run_id, "braid_rows": str(rows)}
    )
    delta_schema = deltalake.Schema.from_arrow(schema)
    if not table_exists(uri):
        create_table_with_add_actions(
            uri, delta_schema, adds, mode="error", partition_by=partition_by,
            configuration=properties, commit_properties=commit,
        )
    else:
        table = deltalake.DeltaTable(uri)
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
    return int(deltalake.DeltaTable(uri).version())


def commit_of_run(uri: str, run_id: str) -> tuple[int, int] | None:
    """(version, rows added) of the delta-rs commit of run `run_id` (its custom metadata)."""
    for entry in open_table(uri).history(50):
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
    table = open_table(uri, version)
    schema = pa.schema(table.schema().to_arrow())
    return table.to_pyarrow_table(filters=_typed(schema, filters))


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

"""Retention of the offline tables: the setting, how writes carry it, maintenance within it, and
the one clear error for a version a table no longer holds (delta-rs tables, no Spark)."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from batch import delta_log
from batch.table_maintenance import maintain, vacuum
from batch.table_retention import TableRetention, interval
from serving.table_versions import TableVersionGone, require_version

SCHEMA = pa.schema([("day", pa.string()), ("value", pa.int64())])


def test_retention_settings_become_delta_interval_properties() -> None:
    assert interval(180 * 86_400_000) == "interval 180 days"
    assert interval(36 * 3_600_000) == "interval 36 hours"
    assert interval(90_000) == "interval 90 seconds"
    with pytest.raises(ValueError, match="whole number of seconds"):
        interval(1_500)
    assert TableRetention.from_env({}).properties() == {
        "delta.deletedFileRetentionDuration": "interval 180 days",
        "delta.logRetentionDuration": "interval 180 days"}
    configured = TableRetention.from_env({"BRAID_DELTA_DELETED_FILE_RETENTION": "30d",
                                          "BRAID_DELTA_LOG_RETENTION": "12h"})
    assert configured.properties() == {"delta.deletedFileRetentionDuration": "interval 30 days",
                                       "delta.logRetentionDuration": "interval 12 hours"}
    assert configured.job_args() == ["--deleted-file-retention", "30d", "--log-retention", "12h"]
    with pytest.raises(ValueError, match="not a duration"):
        TableRetention.parse("a week", "1d")


def _commit(uri: str, retention: TableRetention, run_id: str) -> int:
    """The delta-rs writer's commit replacing a day with nothing."""
    return delta_log.commit_files(uri, schema=SCHEMA, partition_by=["day"], adds=[],
                                  replace={"day": ["2018-05-09"]}, run_id=run_id,
                                  properties=retention.properties())


def test_a_write_creates_the_table_with_the_retention_and_changes_it_in_one_commit(
        tmp_path: Path) -> None:
    uri = str(tmp_path / "table")
    short = TableRetention.parse("1s", "2d")
    assert _commit(uri, short, "a") == 0
    table = DeltaTable(uri)
    assert table.metadata().configuration == short.properties()
    assert _commit(uri, short, "b") == 1  # same setting: no extra commit
    longer = TableRetention.parse("30d", "180d")
    assert _commit(uri, longer, "c") == 3  # one commit sets the properties, one writes
    table = DeltaTable(uri)
    assert table.metadata().configuration == longer.properties()
    assert [h["operation"] for h in table.history(2)] == ["WRITE", "SET TBLPROPERTIES"]


def _two_versions(uri: str) -> None:
    """Version 0 and a version 1 that replaced all of version 0's files."""
    write_deltalake(uri, pa.table({"day": ["2018-05-09"] * 2, "value": [1, 2]}, schema=SCHEMA),
                    partition_by=["day"])
    write_deltalake(uri, pa.table({"day": ["2018-05-09"], "value": [3]}, schema=SCHEMA),
                    partition_by=["day"], mode="overwrite")


def test_vacuum_keeps_what_the_retention_keeps_then_the_old_version_is_one_clear_error(
        tmp_path: Path) -> None:
    uri = str(tmp_path / "candles")
    _two_versions(uri)
    assert maintain(uri, compact=False, retention=TableRetention.parse("1h", "180d")
                    ).files_deleted == 0
    require_version(uri, 0)  # readable: its file was removed less than an hour ago
    assert DeltaTable(uri, version=0).to_pyarrow_table()["value"].to_pylist() == [1, 2]
    time.sleep(1.1)
    assert vacuum(uri, TableRetention.parse("1s", "180d")) == 1
    with pytest.raises(TableVersionGone) as gone:
        require_version(uri, 0)
    assert str(gone.value).startswith(
        f"offline table {uri} no longer holds version 0: 1 of its 1 data files were removed "
        "(VACUUM), e.g. day=2018-05-09/part-")
    assert ("the table's retention: delta.deletedFileRetentionDuration = interval 1 seconds, "
            "delta.logRetentionDuration = interval 180 days (set by "
            "BRAID_DELTA_DELETED_FILE_RETENTION / BRAID_DELTA_LOG_RETENTION, batch/README.md)"
            ) in str(gone.value)
    latest = DeltaTable(uri).version()
    require_version(uri, latest)  # VACUUM never takes the latest version's files
    with pytest.raises(TableVersionGone, match=rf"has no version 42 \(its versions run to "
                                               rf"{latest}\)"):
        require_version(uri, 42)


def test_a_version_whose_log_was_cleaned_up_is_refused_naming_the_log_retention(
        tmp_path: Path) -> None:
    uri = str(tmp_path / "indicators")
    _two_versions(uri)
    table = DeltaTable(uri)
    table.alter.set_table_properties({"delta.logRetentionDuration": "interval 1 seconds"})
    table.create_checkpoint()
    time.sleep(1.1)
    table.cleanup_metadata()
    with pytest.raises(TableVersionGone,
                       match=r"no longer holds version 0: its log was cleaned up .*"
                             r"delta\.logRetentionDuration = interval 1 seconds") as gone:
        require_version(uri, 0)
    # Delta's defaults are named as such where a table sets no property
    assert "deletedFileRetentionDuration = interval 1 week (Delta's default)" in str(gone.value)

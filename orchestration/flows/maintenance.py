"""`offline-maintenance`: compact the offline Delta tables, and vacuum them within the retention.

Each table gets `OPTIMIZE` (small files compacted per partition; every earlier version still
reads its own files) and then `VACUUM` with the configured retention (`BRAID_DELTA_DELETED_FILE_
RETENTION`, `batch.table_retention`), which it first sets on the table: files removed more
recently than that stay, so the training sets of models trained within it can still be rebuilt
(`braid train reproduce`). The flow never vacuums with a shorter retention.
"""

from __future__ import annotations

from typing import Any

from deltalake import DeltaTable
from prefect import flow, task
from prefect.logging import get_run_logger

from orchestration.errors import FlowInputError
from orchestration.run_logging import forward_logs_to_prefect
from serving.settings import FeastSettings

#: The tables the backfills write under the offline root (batch.backfill, batch.sensors_backfill).
MARKETS_TABLES = ("candles", "indicators", "rejected_trades")


def offline_tables() -> list[str]:
    """Every offline table a backfill wrote (those that exist)."""
    feast = FeastSettings()
    names = (*MARKETS_TABLES, feast.sensor_features_table, feast.sensor_readings_table)
    return [uri for uri in (feast.table_uri(n) for n in names) if DeltaTable.is_deltatable(uri)]


@task(retries=1, retry_delay_seconds=30, task_run_name="maintain {table}")
def maintain_table(table: str, compact: bool, delete_removed: bool) -> dict[str, Any]:
    from batch.table_maintenance import maintain

    forward_logs_to_prefect()
    try:
        return maintain(table, compact=compact, delete_removed=delete_removed).as_dict()
    except Exception as error:
        raise FlowInputError(f"maintenance of {table} failed: {error}") from error


@flow(name="offline-maintenance", log_prints=True)
def offline_maintenance(tables: list[str] | None = None, optimize: bool = True,
                        vacuum: bool = True) -> list[dict[str, Any]]:
    """`OPTIMIZE` then `VACUUM` (within the configured retention) each of `tables` (default:
    every offline table under the offline root)."""
    forward_logs_to_prefect()
    chosen = tables or offline_tables()
    if not chosen:
        raise FlowInputError("no offline Delta table to maintain")
    logger = get_run_logger()
    results = []
    for table in chosen:
        result = maintain_table(table, optimize, vacuum)
        logger.info("%s: optimized to version %s (%s files into %s), vacuum deleted %s files "
                    "(retention %s)", table, result["optimized_version"],
                    result["files_compacted"], result["files_added"], result["files_deleted"],
                    result["retention"])
        results.append(result)
    return results

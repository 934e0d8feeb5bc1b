"""DuckDB's `delta` extension, installed from the `duckdb-extension-delta` wheel.

DuckDB downloads extensions at first use, which fails on machines without access to its
extension site. The wheel carries the binary for the pinned DuckDB (1.5.5); installing it once
puts it where `LOAD delta` finds it (`~/.duckdb/extensions/v<version>/<platform>/`).
"""

from __future__ import annotations

import functools

import duckdb


@functools.cache
def ensure_delta_extension() -> None:
    """Install the delta extension into DuckDB's extension folder unless it is there already."""
    row = duckdb.sql(
        "SELECT installed FROM duckdb_extensions() WHERE extension_name = 'delta'"
    ).fetchone()
    if row is not None and row[0]:
        return
    import duckdb_extensions  # the wheel's importer

    duckdb_extensions.import_extension("delta")

"""DuckDB's `delta` and `httpfs` extensions, installed from their wheels; `gs://` access.

DuckDB downloads extensions at first use, which fails on machines without access to its
extension site. The wheels carry the binaries for the pinned DuckDB (1.5.5); installing one
once puts it where `LOAD` finds it (`~/.duckdb/extensions/v<version>/<platform>/`).

Delta tables on `gs://` are read through GCS's S3-compatible XML API (httpfs), with a DuckDB
secret of type `gcs` (:func:`configure_gcs`): with `STORAGE_EMULATOR_HOST` set, the local
emulator (path-style, plain HTTP, any key); else GCS itself with the HMAC key of
`BRAID_FEAST_GCS_HMAC_KEY_ID` / `BRAID_FEAST_GCS_HMAC_SECRET` (a service account's HMAC key:
DuckDB does not use Google's OAuth credentials).
"""

from __future__ import annotations

import functools
import os
from urllib.parse import urlsplit

import duckdb

SECRET_NAME = "braid_gcs"


@functools.cache
def ensure_extension(name: str) -> None:
    """Install extension `name` into DuckDB's extension folder unless it is there already."""
    row = duckdb.sql(
        f"SELECT installed FROM duckdb_extensions() WHERE extension_name = '{name}'"
    ).fetchone()
    if row is not None and row[0]:
        return
    import duckdb_extensions  # the wheels' importer

    duckdb_extensions.import_extension(name)


def ensure_delta_extension() -> None:
    """The delta extension (and httpfs, which it uses for remote tables)."""
    ensure_extension("delta")
    ensure_extension("httpfs")


def gcs_secret_sql(key_id: str | None = None, secret: str | None = None) -> str | None:
    """`CREATE OR REPLACE SECRET` for `gs://`: the emulator when `STORAGE_EMULATOR_HOST` is set,
    else the HMAC key given (None: no key, DuckDB then reads only public buckets)."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        url = urlsplit(emulator)
        return (f"CREATE OR REPLACE SECRET {SECRET_NAME} (TYPE gcs, KEY_ID 'emulator', "
                f"SECRET 'emulator', ENDPOINT '{url.netloc}', URL_STYLE 'path', "
                f"USE_SSL {'true' if url.scheme == 'https' else 'false'})")
    if key_id and secret:
        return (f"CREATE OR REPLACE SECRET {SECRET_NAME} (TYPE gcs, KEY_ID '{key_id}', "
                f"SECRET '{secret}')")
    return None


def configure_gcs(connection: duckdb.DuckDBPyConnection) -> None:
    """Let `connection` read `gs://` (module docstring)."""
    from serving.settings import FeastSettings

    ensure_delta_extension()
    settings = FeastSettings()
    statement = gcs_secret_sql(settings.gcs_hmac_key_id, settings.gcs_hmac_secret)
    if statement is not None:
        connection.execute(statement)

"""Where tables and input files live: a local path or `gs://bucket/path`.

Python code reaches `gs://` through gcsfs (fsspec) and delta-rs; Spark through Hadoop's GCS
connector (`batch.spark_conf`). With `STORAGE_EMULATOR_HOST` set (the local GCS emulator in
tests and demos) each talks to the emulator anonymously: gcsfs with `endpoint_url`, delta-rs
(`object_store`) with a service-account key that names the emulator as its base URL and turns
OAuth off (:func:`delta_storage_options`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import fsspec

GCS_SCHEME = "gs://"


def is_gcs(uri: str) -> bool:
    return uri.startswith(GCS_SCHEME)


def normalize_uri(uri: str) -> str:
    """An absolute local path (no `file:` prefix) or the `gs://` URI, without a trailing slash."""
    if is_gcs(uri):
        return uri.rstrip("/")
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    elif uri.startswith("file:"):
        uri = uri[len("file:") :]
    return str(Path(uri).expanduser().resolve())


STORAGE_ENV_KEYS = (
    "STORAGE_EMULATOR_HOST",
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
)


def storage_env() -> dict[str, str]:
    """The driver's storage settings, to hand to Spark's Python workers (which may have been
    started before they were set, e.g. in a test session)."""
    return {key: os.environ[key] for key in STORAGE_ENV_KEYS if key in os.environ}


def apply_storage_env(env: dict[str, str]) -> None:
    """In a worker: adopt the driver's storage settings."""
    os.environ.update(env)


def filesystem_for(uri: str) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem for `uri` (local or gcsfs; the emulator when configured)."""
    if not is_gcs(uri):
        return fsspec.filesystem("file")
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        return fsspec.filesystem("gcs", token="anon", endpoint_url=emulator)
    return fsspec.filesystem("gcs")


def delta_storage_options(uri: str) -> dict[str, str]:
    """delta-rs `storage_options` for a table at `uri`: none locally or on GCS proper (Google's
    application default credentials), the emulator's address for `gs://` when
    `STORAGE_EMULATOR_HOST` is set."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if not is_gcs(uri) or not emulator:
        return {}
    key = {"gcs_base_url": emulator.rstrip("/"), "disable_oauth": True,
           "client_email": "", "private_key": "", "private_key_id": ""}
    return {"google_service_account_key": json.dumps(key)}


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def expand_paths(patterns: list[str]) -> list[str]:
    """Files named by `patterns` (files, folders or globs), each pattern's matches sorted.

    Pattern order is kept: it is the order in which files were given, which breaks ties in
    arrival order. A folder stands for the files directly inside it.
    """
    files: list[str] = []
    for pattern in patterns:
        uri = normalize_uri(pattern)
        fs = filesystem_for(uri)
        bare = uri[len(GCS_SCHEME) :] if is_gcs(uri) else uri
        if any(ch in bare for ch in "*?["):
            matches = sorted(fs.glob(bare))
        elif fs.isdir(bare):
            matches = sorted(p for p in fs.ls(bare, detail=False) if fs.isfile(p))
        else:
            matches = [bare]
        if not matches:
            raise FileNotFoundError(f"no input file matches {pattern!r}")
        for match in matches:
            name = match.rsplit("/", 1)[-1]
            if name.startswith((".", "_")):
                continue
            files.append(f"{GCS_SCHEME}{match}" if is_gcs(uri) else match)
    return files

"""Where tables and input files live: a local path or `gs://bucket/path`.

Outside Dataproc, `gs://` goes through gcsfs (fsspec). With `STORAGE_EMULATOR_HOST` set (the
local GCS emulator in tests and demos) gcsfs talks to the emulator anonymously. On Dataproc the
Spark readers use the Hadoop GCS connector instead (see `trade_inputs`).
"""

from __future__ import annotations

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

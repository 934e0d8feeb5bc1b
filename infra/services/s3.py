"""A local S3-compatible server (moto) for the durable broker; data lives in its memory.

It must outlive broker restarts: only `braid down` (or the test fixture) stops it.
"""

from __future__ import annotations

from functools import partial

import structlog

from infra.health import http_ok
from infra.services.base import ServiceSpec, venv_executable
from infra.settings import StackSettings

log = structlog.get_logger(__name__)

NAME = "s3"


def create_bucket(settings: StackSettings) -> None:
    """Create the broker's bucket if it is missing."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
        region_name=settings.aws_region,
    )
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if settings.s3_bucket not in existing:
        client.create_bucket(Bucket=settings.s3_bucket)
        log.info("s3 bucket created", bucket=settings.s3_bucket)


def spec(settings: StackSettings) -> ServiceSpec:
    """`moto_server` on `s3_port`, then the `s3_bucket` bucket."""
    exe = venv_executable("moto_server", "install moto[server] (pip install 'moto[server]==5.2.5')")
    return ServiceSpec(
        name=NAME,
        argv=[exe, "--host", settings.host, "--port", str(settings.s3_port)],
        host=settings.host,
        port=settings.s3_port,
        health=partial(http_ok, f"{settings.s3_endpoint}/moto-api/"),
        after_start=partial(create_bucket, settings),
    )

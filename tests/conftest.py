"""Session fixtures that start real services (through `infra`) on free ports under a tmp dir.

- `kafka_settings`: an in-memory Tansu broker; `KafkaSettings` pointing at it. Topics are NOT
  created: tests create what they need (use `unique_topic_prefix` for fresh names).
- `durable_stack`: moto S3 + a Tansu broker on the S3 engine, with `restart_broker()`.
- `gcs_emulator`: the GCS emulator with a bucket; sets `STORAGE_EMULATOR_HOST` and
  `GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false` in `os.environ` for the session.

A missing binary fails the fixture with a message naming it. Helpers (`free_port`,
`DurableStack`, `GcsEmulator`, `unique_topic`) live in `infra.testing`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from infra import stack
from infra.processes import ServiceError
from infra.services import gcs
from infra.settings import StackSettings
from infra.testing import DurableStack, GcsEmulator, free_port
from streaming.settings import KafkaSettings


def start_stack(settings: StackSettings) -> None:
    """`stack.up` without topics; a missing binary or failed start fails the test clearly."""
    try:
        stack.up(settings, create_topics=False)
    except ServiceError as exc:
        stack.down(settings)
        pytest.fail(f"could not start {settings.enabled_services()}: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSettings]:
    """An in-memory Tansu broker for the session; no topics pre-created."""
    settings = StackSettings(
        die_with_parent=True,
        state_dir=tmp_path_factory.mktemp("stack-memory"),
        broker_port=free_port(),
        services=["broker"],
        durable=False,
    )
    start_stack(settings)
    try:
        yield settings.local_kafka_settings()
    finally:
        stack.down(settings)


@pytest.fixture(scope="session")
def durable_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DurableStack]:
    """moto S3 + Tansu on its S3 engine, on free ports, for the session."""
    settings = StackSettings(
        die_with_parent=True,
        state_dir=tmp_path_factory.mktemp("stack-durable"),
        broker_port=free_port(),
        s3_port=free_port(),
        services=["broker"],
        durable=True,
    )
    start_stack(settings)
    try:
        yield DurableStack(settings, settings.local_kafka_settings())
    finally:
        stack.down(settings)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    """The in-memory GCS emulator with bucket `braid`; client env vars set for the session."""
    settings = StackSettings(
        die_with_parent=True,
        state_dir=tmp_path_factory.mktemp("stack-gcs"),
        gcs_port=free_port(),
        services=["gcs"],
    )
    start_stack(settings)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in gcs.client_env(settings).items():
            mp.setenv(key, value)
        try:
            yield GcsEmulator(settings.gcs_endpoint, settings.gcs_bucket, settings.gcs_project)
        finally:
            stack.down(settings)


@pytest.fixture
def unique_topic_prefix() -> str:
    """A fresh prefix per test, so tests sharing one broker never see each other's topics."""
    return f"t{uuid.uuid4().hex[:10]}."

"""Session fixtures that start real services (through `infra`) on free ports under a tmp dir.

- `kafka_settings`: an Apache Kafka broker (KRaft); `KafkaSettings` pointing at it. Topics are
  NOT created: tests create what they need (use `unique_topic_prefix` for fresh names).
- `broker_stack`: a second Apache Kafka broker that tests stop, kill -9 and restart
  (`restart_broker(hard=...)`), so the shared one is never disturbed.
- `kafka_cluster` (module scope): a 3-node Apache Kafka cluster (`infra.testing.KafkaCluster`:
  kill -9 a node, start it again, find the active controller, wait for the replicas to be in
  sync), one per test module that asks for it.
- `redis_url`: a real `redis-server` on a free port.
- `gcs_emulator`: the GCS emulator with a bucket; sets `STORAGE_EMULATOR_HOST` and
  `GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false` in `os.environ` for the session.

A missing binary fails the fixture with a message naming it. Helpers (`free_port`,
`broker_settings`, `BrokerStack`, `GcsEmulator`, `unique_topic`) live in `infra.testing`.

`scripts/test.sh` runs the suite on two pytest-xdist workers (`--dist loadfile`: a module's
tests on one worker), each starting services of its own; `pytest_collection_modifyitems` below
orders the modules longest first. (`--dist loadgroup` would group across modules, but
pytest-xdist 3.8 cannot mark node ids under pytest 9.2: the groups are silently ignored.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import stack
from infra.processes import ServiceError
from infra.services import gcs
from infra.settings import StackSettings
from infra.testing import (
    BrokerStack,
    GcsEmulator,
    KafkaCluster,
    broker_settings,
    cluster_settings,
    free_port,
)
from streaming.settings import KafkaSettings

TESTS = Path(__file__).resolve().parent

#: Test modules by measured duration, longest first (2-core machine). Under pytest-xdist's
#: `--dist loadfile` a module is one unit of work on one worker; handing out the long ones
#: first keeps one from starting last while the other worker idles. The rest follow in
#: collection order.
LONGEST_FIRST = (
    "integration/orchestration/test_orchestration_deployments.py",  # a stack, Spark flow runs
    "integration/test_kafka_cluster_faults.py",  # 3 nodes, 2 node kills under 2 pipelines
    "integration/test_demo.py",
    "integration/test_kafka_cluster_scaling.py",  # 3 nodes, 9 processor starts
    "integration/test_sensors_effectively_once.py",  # processor kills, then a broker kill
    "integration/test_batch_backfill.py",
    "integration/test_batch_spark_cluster.py",  # a standalone cluster, two spark-submits
    "integration/test_markets_effectively_once.py",
    "integration/test_batch_sparse_ranges.py",
    "integration/test_lambda_markets.py",
    "integration/test_lambda_arrival.py",  # real processes, pauses, two Spark backfills
    "integration/test_stack.py",
    "integration/test_batch_delta_spark.py",
    "integration/training/test_reproduce_training_sets.py",  # two Spark backfills, 3 fits
    "integration/test_batch_gcs.py",  # delta-spark to the GCS emulator, Feast reads it back
    "integration/test_batch_readme.py",
    "integration/test_sensors_lambda.py",
    "integration/serving/test_sensor_readings_backfill.py",
    "integration/orchestration/test_orchestration_flows.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.relative_to(TESTS).as_posix(), len(rank)))


def start_stack(settings: StackSettings) -> None:
    """`stack.up` without topics; a missing binary or failed start fails the test clearly."""
    try:
        stack.up(settings, create_topics=False)
    except ServiceError as exc:
        stack.down(settings)
        pytest.fail(f"could not start {settings.enabled_services()}: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSettings]:
    """An Apache Kafka broker for the session; no topics pre-created."""
    settings = broker_settings(tmp_path_factory.mktemp("stack-kafka"), die_with_parent=True)
    start_stack(settings)
    try:
        yield settings.local_kafka_settings()
    finally:
        stack.down(settings)


@pytest.fixture(scope="session")
def broker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerStack]:
    """A broker of its own, for tests that stop, kill and restart it."""
    settings = broker_settings(tmp_path_factory.mktemp("stack-restart"), die_with_parent=True)
    start_stack(settings)
    try:
        yield BrokerStack(settings, settings.local_kafka_settings())
    finally:
        stack.down(settings)


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A 3-node Kafka cluster (each node broker and controller) shared by one test module;
    topics created through Braid get 3 replicas, `min.insync.replicas` 2. Its tests may kill
    -9 and restart nodes, but must leave all three running and in sync."""
    settings = cluster_settings(tmp_path_factory.mktemp("stack-cluster"), nodes=3,
                                die_with_parent=True, health_timeout_s=180)
    start_stack(settings)
    try:
        yield KafkaCluster(settings, settings.local_kafka_settings())
    finally:
        stack.down(settings)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server (Debian's redis-server) on a free port, for the session."""
    settings = StackSettings(
        die_with_parent=True,
        state_dir=tmp_path_factory.mktemp("stack-redis"),
        redis_port=free_port(),
        services=["redis"],
    )
    start_stack(settings)
    try:
        yield settings.redis_url
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

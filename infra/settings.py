"""Settings of the embedded local stack (env prefix `BRAID_STACK_`, or `.env`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streaming.settings import KafkaSettings

#: Every service the stack knows, in start order (a service starts after those it needs).
KNOWN_SERVICES = ("broker", "gcs", "redis", "mlflow", "prefect", "prefect-flows", "feast-ui",
                  "spark-master", "spark-worker-1", "spark-worker-2")
#: What `braid up` runs unless told otherwise: not the Spark standalone cluster (jobs run in
#: `local[N]` by default; the cluster's daemons hold ~650 MiB).
DEFAULT_SERVICES = KNOWN_SERVICES[:7]

#: Node n of a Kafka cluster listens on the first node's ports plus this times (n - 1).
NODE_PORT_STEP = 2


@dataclass(frozen=True)
class KafkaNode:
    """One node of the local Kafka cluster: a broker and a KRaft controller in one process."""

    node_id: int  # 1, 2, ... (Kafka's node.id)
    port: int  # the PLAINTEXT listener clients use
    controller_port: int  # the CONTROLLER listener the KRaft quorum uses


class StackSettings(BaseSettings):
    """Where the stack keeps its state, its ports and which services it runs."""

    model_config = SettingsConfigDict(env_prefix="BRAID_STACK_", env_file=".env", extra="ignore")

    state_dir: Path = Path("var")
    host: str = "127.0.0.1"
    #: Kafka nodes to run, each a broker and a KRaft controller (a quorum of N voters). Topics
    #: get min(3, N) replicas and `min.insync.replicas` min(2, N) from the brokers' defaults.
    broker_nodes: int = Field(default=1, ge=1)
    #: The (first) node's client listener; node n listens on `broker_port + 2(n - 1)`.
    broker_port: int = 19092
    #: The (first) node's KRaft controller listener; node n on `controller_port + 2(n - 1)`.
    controller_port: int = 19093
    #: Java heap of each broker node (-Xms and -Xmx).
    broker_heap: str = "512m"
    gcs_port: int = 19023
    redis_port: int = 16379
    #: The MLflow tracking server (UI, REST API, registry, artifacts proxy).
    mlflow_port: int = 15000
    #: uvicorn workers of the MLflow server (each holds ~150 MiB).
    mlflow_workers: int = 1
    #: The Prefect server (API under /api, UI at /).
    prefect_port: int = 14200
    #: The process serving Braid's deployments: its runner webserver (health check) port.
    prefect_flows_port: int = 14201
    #: `feast ui` over the Feast repository.
    feast_ui_port: int = 18888
    #: The Feast repository `feast ui` shows (default: feature_repo/ of the Braid checkout).
    feast_repo: Path | None = None
    services: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SERVICES)
    )
    #: The Spark standalone cluster (services spark-master, spark-worker-1, spark-worker-2).
    spark_master_port: int = 17077
    spark_master_ui_port: int = 18080
    spark_worker_ports: list[int] = Field(default_factory=lambda: [17078, 17079],
                                          min_length=2, max_length=2)
    spark_worker_cores: int = 1
    #: Memory each worker offers its executors (an executor takes spark.executor.memory, 1g).
    spark_worker_memory: str = "1500m"
    #: Java heap of each Spark daemon (master, workers), not of the executors.
    spark_daemon_heap: str = "256m"
    gcs_bucket: str = "braid"
    gcs_project: str = "braid-local"
    health_timeout_s: float = 60.0
    stop_timeout_s: float = 10.0
    #: Services get SIGTERM when the process that started them dies (Linux; test fixtures).
    die_with_parent: bool = False

    @field_validator("services", mode="before")
    @classmethod
    def _split_services(cls, value: object) -> object:
        """Accept `broker,gcs` (env / CLI) as well as a list."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("services")
    @classmethod
    def _known_services(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(KNOWN_SERVICES))
        if unknown:
            raise ValueError(f"unknown services {unknown}; known: {list(KNOWN_SERVICES)}")
        return value

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    def enabled_services(self) -> list[str]:
        """The services to run, in start order."""
        wanted = set(self.services)
        return [name for name in KNOWN_SERVICES if name in wanted]

    def kafka_nodes(self) -> list[KafkaNode]:
        """The Kafka cluster's nodes, node 1 first."""
        return [
            KafkaNode(n, self.broker_port + NODE_PORT_STEP * (n - 1),
                      self.controller_port + NODE_PORT_STEP * (n - 1))
            for n in range(1, self.broker_nodes + 1)
        ]

    @property
    def replication_factor(self) -> int:
        """Replicas of every topic on the local cluster, the internal ones included."""
        return min(3, self.broker_nodes)

    @property
    def min_insync_replicas(self) -> int:
        """Replicas that must hold a record before acks=all acknowledges it."""
        return min(2, self.broker_nodes)

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client address (any one of them is enough to bootstrap)."""
        return ",".join(f"{self.host}:{node.port}" for node in self.kafka_nodes())

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self.redis_port}/0"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def prefect_url(self) -> str:
        """The Prefect UI; its API (PREFECT_API_URL) is this plus `/api`."""
        return f"http://{self.host}:{self.prefect_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def feast_ui_url(self) -> str:
        return f"http://{self.host}:{self.feast_ui_port}"

    @property
    def spark_master_url(self) -> str:
        return f"spark://{self.host}:{self.spark_master_port}"

    @property
    def gcs_endpoint(self) -> str:
        return f"http://{self.host}:{self.gcs_port}"

    def local_kafka_settings(self) -> KafkaSettings:
        """Plaintext settings for the stack's own broker, whatever `KAFKA_*` says."""
        return KafkaSettings(
            bootstrap_servers=self.bootstrap_servers,
            security_protocol="",
            sasl_mechanism="",
            sasl_username="",
            sasl_password="",
            ssl_ca_location="",
            ssl_certificate_location="",
            ssl_key_location="",
            extra={},
        )

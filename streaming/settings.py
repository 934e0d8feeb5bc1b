"""Streaming configuration, from the environment (prefix `BRAID_` or plain Kafka names) or `.env`.

Any Kafka-protocol broker works: point `KAFKA_BOOTSTRAP_SERVERS` at it and pass SASL/TLS
settings; they go to librdkafka unchanged.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.sensors.schemas import DEFAULT_SENSOR_PARTITIONS
from features.sensors.window_math import DEFAULT_MAX_LATENESS_MS
from features.windows import format_duration, parse_duration_ms


class KafkaSettings(BaseSettings):
    """Connection to the broker. Empty security fields are not sent to librdkafka."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", env_file=".env", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:19092"
    security_protocol: str = ""  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str = ""  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 | OAUTHBEARER
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_ca_location: str = ""
    ssl_certificate_location: str = ""
    ssl_key_location: str = ""
    session_timeout_ms: int = 6000
    # Idempotent producers never duplicate or reorder on retries. Off: one request in flight
    # per connection keeps the order, a retry may duplicate (Braid's outputs are keyed, so a
    # duplicate carries the same value).
    enable_idempotence: bool = True
    # How long a broker may hold a fetch that has no data (librdkafka's default). It bounds how
    # often an idle consumer asks; it does not delay data: Apache Kafka answers a held fetch as
    # soon as one of its partitions gets a record. Measured alternately on one warm broker
    # (bench/bench_fetch_wait.py, bench/README.md): a produce -> consume hop over 100
    # partitions at ~1,000 msg/s had p99 6.0-6.1 ms at 500 and 6.7-17.3 at 100 (the first
    # measurement on a fresh broker had a tail whatever the value: 219 ms at 500, 111 in an
    # earlier run, 356 at 100), while the sensors pipeline's two idle consumers (100 + 500
    # partitions) cost the broker nothing measurable at 500 and 1-4% of a core more at 100
    # (10.6% at 10). A shorter wait also makes a live processor poll more often with fewer
    # messages per poll (the sensor window processor at 1,000 events/s: 2.6x the steps).
    fetch_wait_max_ms: int = 500
    # Extra librdkafka properties as JSON, e.g. '{"client.rack": "a"}'; they win over Braid's
    # defaults (e.g. '{"linger.ms": "1"}')
    extra: dict[str, str] = Field(default_factory=dict)

    def client_config(self) -> dict[str, str | int | float | bool]:
        """Properties shared by producers, consumers and the admin client."""
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            # TCP_NODELAY, as Kafka's Java clients always set it: with Nagle on (librdkafka's
            # default) a produce -> consume hop on Apache Kafka measured p50 61 ms instead of 8
            "socket.nagle.disable": True,
        }
        optional = {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
        }
        conf.update({k: v for k, v in optional.items() if v})
        conf.update(self.extra)
        return conf


class TopicSettings(BaseSettings):
    """Partition counts and replication for the topic catalogue.

    Replication unset means the cluster's own defaults (`default.replication.factor`,
    `min.insync.replicas`): the local stack sets them to min(3, nodes) and min(2, nodes), a
    managed cluster has its own. Set them to create Braid's topics with these values on any
    cluster instead."""

    model_config = SettingsConfigDict(env_prefix="BRAID_TOPIC_", env_file=".env", extra="ignore")

    replication_factor: int | None = Field(default=None, ge=1)
    # replicas that must hold a record before an acks=all write is acknowledged
    min_insync_replicas: int | None = Field(default=None, ge=1)
    market_partitions: int = 8
    sensor_partitions: int = DEFAULT_SENSOR_PARTITIONS


class MarketsSettings(BaseSettings):
    """The markets pipeline's windows and lateness. A quiet pair's windows are closed after
    `idle_timeout` of wall-clock silence only while the pair is live: its latest trade reached
    Kafka at most `live_lag` after its stream time (`streaming.processors.candles`)."""

    model_config = SettingsConfigDict(env_prefix="BRAID_", env_file=".env", extra="ignore")

    candle_durations: list[str] = Field(default_factory=lambda: ["60s"])
    grace: str = "5s"
    idle_timeout: str = "10s"
    live_lag: str = "1m"
    pairs: list[str] = Field(default_factory=lambda: ["XBT/USD", "ETH/USD"])


class EventTimeSettings(BaseSettings):
    """Event-time sanity, for every processor that reads event times (candles, sensor windows,
    sensor join): a record whose event time lies more than `max_event_time_skew` ahead of its
    Kafka timestamp is dead-lettered (`features.event_time`, which explains the 1 h default).
    A backfill of an archive that keeps Kafka timestamps must use the same value."""

    model_config = SettingsConfigDict(env_prefix="BRAID_", env_file=".env", extra="ignore")

    max_event_time_skew: str = "1h"

    @property
    def max_event_time_skew_ms(self) -> int:
        return parse_duration_ms(self.max_event_time_skew)


class SensorSettings(BaseSettings):
    """The sensors pipeline's lateness bound by partition (prefix `BRAID_SENSORS_`): a reading
    (SX, SY, SZ, and the join's feature rows) `max_lateness` or more behind its
    topic-partition's stream time is late, whatever its client's own stream time
    (`features.sensors.vectors.RULE`). It bounds what the window processor and the join hold
    for a client one of whose inputs stopped, and how far back their commit offsets stay. Must
    exceed `BRAID_MAX_EVENT_TIME_SKEW`; the window processor, the join, the training rows and
    the backfill must use the same value."""

    model_config = SettingsConfigDict(env_prefix="BRAID_SENSORS_", env_file=".env",
                                      extra="ignore")

    max_lateness: str = format_duration(DEFAULT_MAX_LATENESS_MS)

    @property
    def max_lateness_ms(self) -> int:
        return parse_duration_ms(self.max_lateness)


class PredictorSettings(BaseSettings):
    """The markets predictor (`braid markets predictor`, prefix `BRAID_PREDICTOR_`)."""

    model_config = SettingsConfigDict(env_prefix="BRAID_PREDICTOR_", env_file=".env",
                                      extra="ignore")

    # How long an indicator row waits for its candle's features to reach the online store
    # (the online sink writes them at about the same time) before it counts as `missing`.
    feature_wait: str = "2s"
    # How often rows waiting for their candle's online features read the store again (the
    # processor's poll waits no longer while any row waits).
    retry_interval: str = "2ms"
    # Longest wait for a message in one poll while no row waits (a message ends it at once).
    poll_timeout: str = "100ms"
    # Feast profile and repository of the online store read.
    feast_profile: str = "local"

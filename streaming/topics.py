"""The topic catalogue: every topic Braid uses, with explicit configs.

Braid creates its topics itself (never through broker auto-creation) so partitions, retention
and cleanup policy are what this file says on any Kafka-protocol broker.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog
from confluent_kafka.admin import AdminClient, NewTopic

from streaming.settings import KafkaSettings, TopicSettings

log = structlog.get_logger(__name__)

DAY_MS = 86_400_000
#: A replication factor of -1 asks the broker for its `default.replication.factor` (KIP-464).
BROKER_DEFAULT = -1


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    cleanup_policy: str = "delete"  # delete | compact
    retention_ms: int = 7 * DAY_MS  # -1 keeps forever
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **self.extra,
        }


TRADES = "trades"
CANDLES = "candles"
INDICATORS = "technical_indicators"
DEAD_LETTER = "dead_letter"
CHECKPOINTS = "braid_checkpoints"
SENSOR_INPUTS = ("SX", "SY", "SZ")
SENSOR_FEATURES = ("FA", "FI", "FD")
SENSOR_PREDICTIONS = "predictions.sensors"
MARKET_PREDICTIONS = "predictions.markets"
ONLINE_WRITES = "online_writes"


def catalogue(settings: TopicSettings | None = None) -> list[TopicSpec]:
    """All of Braid's topics."""
    s = settings or TopicSettings()
    markets = s.market_partitions
    sensors = s.sensor_partitions
    return [
        TopicSpec(TRADES, markets, retention_ms=30 * DAY_MS, description="trades keyed by pair"),
        TopicSpec(
            CANDLES, markets, retention_ms=-1, cleanup_policy="compact",
            description="final OHLCV candles keyed pair|duration|window_start",
        ),
        TopicSpec(
            INDICATORS, markets, retention_ms=-1, cleanup_policy="compact",
            description="technical indicators keyed pair|duration|window_start",
        ),
        TopicSpec(DEAD_LETTER, 1, retention_ms=30 * DAY_MS, description="rejected records"),
        TopicSpec(
            CHECKPOINTS, 1, retention_ms=-1, cleanup_policy="compact",
            description="processor watermarks keyed group|topic|partition",
        ),
        *(TopicSpec(t, sensors, description=f"sensor {t} readings keyed by client")
          for t in SENSOR_INPUTS),
        *(TopicSpec(t, sensors, description=f"window feature {t} keyed by client")
          for t in SENSOR_FEATURES),
        TopicSpec(SENSOR_PREDICTIONS, sensors,
                  description="alert predictions keyed client|timestamp_ms|trigger, partitioned "
                              "by client (a key again: a correction)"),
        TopicSpec(MARKET_PREDICTIONS, markets, retention_ms=7 * DAY_MS,
                  description="next-candle direction predictions keyed "
                              "pair|duration|window_start (one per candle: not compacted)"),
        TopicSpec(ONLINE_WRITES, markets, retention_ms=30 * DAY_MS,
                  description="every row the online sink wrote, keyed view|entity|event_ms "
                              "(braid consistency --history; a log: not compacted)"),
    ]


def ensure_topics(
    kafka: KafkaSettings,
    specs: Iterable[TopicSpec] | None = None,
    topic_settings: TopicSettings | None = None,
) -> list[str]:
    """Create the missing topics of `specs` (default: the whole catalogue); returns new names.

    Replication comes from `topic_settings` (`BRAID_TOPIC_REPLICATION_FACTOR`,
    `BRAID_TOPIC_MIN_INSYNC_REPLICAS`); where unset, the cluster's defaults apply (the local
    stack's: min(3, nodes) replicas, `min.insync.replicas` min(2, nodes)).

    An existing topic is left alone: its partition count is checked and a mismatch raises, since
    co-partitioning and key order depend on it.
    """
    wanted = list(specs) if specs is not None else catalogue(topic_settings)
    replication = topic_settings or TopicSettings()
    admin = AdminClient(kafka.client_config())
    existing = admin.list_topics(timeout=10).topics
    created: list[str] = []
    new = [
        NewTopic(
            t.name,
            num_partitions=t.partitions,
            replication_factor=replication.replication_factor or BROKER_DEFAULT,
            config={**t.configs(), **_min_insync(replication)},
        )
        for t in wanted
        if t.name not in existing
    ]
    for spec in wanted:
        if spec.name in existing:
            have = len(existing[spec.name].partitions)
            if have != spec.partitions:
                raise RuntimeError(
                    f"topic {spec.name} has {have} partitions, the catalogue says {spec.partitions}"
                )
    if new:
        for name, future in admin.create_topics(new, operation_timeout=10).items():
            try:
                future.result()
                created.append(name)
            except Exception as exc:  # already created by a concurrent caller is fine
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
        log.info("topics created", topics=created)
        _wait_until_visible(admin, {t.name: t.partitions for t in wanted if t.name in created})
    return created


def _min_insync(settings: TopicSettings) -> dict[str, str]:
    if settings.min_insync_replicas is None:
        return {}
    return {"min.insync.replicas": str(settings.min_insync_replicas)}


def _wait_until_visible(admin: AdminClient, partitions: dict[str, int],
                        timeout_s: float = 90.0) -> None:
    """Wait until the broker's metadata shows every new topic with all its partitions, each
    with a leader.

    A created topic reaches the brokers' metadata asynchronously (on Apache Kafka, KRaft
    propagates it in milliseconds to seconds), so a client asking at once may not see it yet;
    a producer then may even have a record refused as "unknown topic or partition" (reported in
    its delivery report only: librdkafka issue 4904), which Braid's producers raise on.
    """
    deadline = time.monotonic() + timeout_s
    missing = dict(partitions)
    while missing:
        topics = admin.list_topics(timeout=10).topics
        missing = {
            name: count for name, count in missing.items()
            if name not in topics or topics[name].error is not None
            or len(topics[name].partitions) != count
            or any(p.leader < 0 or p.error is not None
                   for p in topics[name].partitions.values())
        }
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(f"topics not visible after {timeout_s:.0f} s: {sorted(missing)}")
        time.sleep(0.1)

"""Braid's partitioner: the one mapping from a record key to a partition.

Every producer in Braid passes ``partition=`` explicitly, computed here, and co-partitioned
topics (``trades``, ``candles``, ``technical_indicators``; the sensor topics) rely on it: the
same pair (client) lands on the same partition number of each.

The mapping is Apache Kafka's default for keyed records, that of the Java client
(``Utils.toPositive(Utils.murmur2(key)) % partitions``), which librdkafka implements as its
``murmur2`` / ``murmur2_random`` partitioners. So a producer outside Braid that keys an entity's
records by the entity and uses that partitioner (any Java or Scala client, Kafka Connect,
Kafka Streams, Spark's Kafka sink; confluent-kafka with ``partitioner=murmur2_random``) writes
them where Braid's processors expect them. (librdkafka's own default, ``consistent_random``,
is CRC32: configure such producers.) Tests hold it to the Java client's published vectors and
to librdkafka's partitioner through a real produce.

It lives in `features/` because the sensors' lateness rule is per topic-partition: the batch
layer and the training rows compute a client's partition here too (``streaming.partitioning``
re-exports it for producers).
"""

from __future__ import annotations

from functools import lru_cache

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of `data` (`org.apache.kafka.common.utils.Utils.murmur2`), as an
    unsigned int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length % 4
    if tail == 3:
        h ^= data[end + 2] << 16
    if tail >= 2:
        h ^= data[end + 1] << 8
    if tail >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@lru_cache(maxsize=1 << 16)
def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key`` (UTF-8) among ``partitions``: Kafka's default for keyed
    records, ``toPositive(murmur2(key)) % partitions``. Stable across processes and hosts;
    memoised (keys are entities: a pair, a client)."""
    if partitions <= 0:
        raise ValueError(f"partitions must be positive, got {partitions}")
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def partitions_of(keys: list[str], partitions: int) -> list[int]:
    """:func:`partition_for` of each key."""
    return [partition_for(k, partitions) for k in keys]

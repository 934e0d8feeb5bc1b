"""Braid's partitioner: the one mapping from a record key to a partition.

Every producer in Braid passes ``partition=`` explicitly, computed here, so all client libraries
(librdkafka, kafka-python, aiokafka, Spark, the Kafka tools) agree on where a key lives, whatever
their default partitioner would do. Co-partitioned topics (``trades``, ``candles``,
``technical_indicators``) rely on it: the same pair lands on the same partition number.
"""

from __future__ import annotations

import zlib


def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``: ``crc32(utf-8 key) % partitions``.

    Stable across processes, Python versions and hosts (unlike ``hash()``).
    """
    if partitions <= 0:
        raise ValueError(f"partitions must be positive, got {partitions}")
    return zlib.crc32(key.encode("utf-8")) % partitions

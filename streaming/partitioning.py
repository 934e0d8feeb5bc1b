"""Braid's partitioner for producers: `features.partitioning.partition_for`, the one mapping
from a record key to a partition (Kafka's default for keyed records, murmur2). It lives in
`features/` because the batch layer and the training rows need it too: the sensors' lateness
rule is per topic-partition."""

from __future__ import annotations

from features.partitioning import murmur2, partition_for

__all__ = ["murmur2", "partition_for"]

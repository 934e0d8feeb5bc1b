"""Braid's partitioner is Kafka's default for keyed records, checked against values another
implementation published: the Java client's murmur2 test vectors (Apache Kafka,
`clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java`, `testMurmur2`). The
integration test `test_partitioning_librdkafka.py` checks it against librdkafka's partitioner
through a real produce."""

from __future__ import annotations

import ctypes

import pytest

from streaming.partitioning import murmur2, partition_for

# UtilsTest.testMurmur2: key bytes -> Utils.murmur2(key) as the Java int (signed)
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "java"), JAVA_VECTORS.items())
def test_murmur2_equals_the_java_clients_published_vectors(key: bytes, java: int) -> None:
    assert ctypes.c_int32(murmur2(key)).value == java


@pytest.mark.parametrize(("key", "java"), JAVA_VECTORS.items())
def test_the_partition_is_the_java_default_partitioners(key: bytes, java: int) -> None:
    # BuiltInPartitioner.partitionForKey: toPositive(murmur2(key)) % partitions, where
    # toPositive(n) = n & 0x7fffffff (not abs: the sign bit is dropped)
    for partitions in (1, 3, 8, 100):
        assert partition_for(key.decode(), partitions) == (java & 0x7FFFFFFF) % partitions


def test_partition_is_in_range_for_many_keys() -> None:
    for i in range(500):
        assert 0 <= partition_for(f"PAIR{i}/USD", 7) < 7


def test_partition_rejects_non_positive_partition_count() -> None:
    with pytest.raises(ValueError):
        partition_for("XBT/USD", 0)

import zlib

import pytest

from streaming.partitioning import partition_for


def test_partition_is_crc32_of_utf8_key_modulo_partition_count() -> None:
    # Golden values from the CRC-32 (IEEE) definition: crc32(b"XBT/USD") computed by zlib.
    assert partition_for("XBT/USD", 8) == zlib.crc32(b"XBT/USD") % 8
    assert partition_for("", 8) == 0  # crc32 of empty input is 0
    assert zlib.crc32(b"123456789") == 0xCBF43926  # the standard CRC-32 check value
    assert partition_for("123456789", 1000) == 0xCBF43926 % 1000


def test_partition_is_stable_and_in_range_for_many_keys() -> None:
    for i in range(500):
        key = f"PAIR{i}/USD"
        p = partition_for(key, 7)
        assert 0 <= p < 7
        assert p == partition_for(key, 7)


def test_partition_rejects_non_positive_partition_count() -> None:
    with pytest.raises(ValueError):
        partition_for("XBT/USD", 0)

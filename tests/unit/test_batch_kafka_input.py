"""A Kafka partition's records as the backfill parses them (no Spark, no broker)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from batch.kafka_input import (
    NOT_AN_OBJECT,
    KafkaInputError,
    KafkaPosition,
    parse_kafka_lines,
    records_as_json_lines,
)

GOOD = {"pair": "XBT/USD", "price": 100.0, "volume": 1.0, "side": "buy", "order_type": "market",
        "trade_id": 1, "timestamp_ms": 1_000}


def records(values: list[bytes | None], first_offset: int = 10,
            kafka_ms: int = 5_000) -> pa.Table:
    return pa.table({
        "partition": [0] * len(values),
        "offset": list(range(first_offset, first_offset + len(values))),
        "kafka_timestamp_ms": [kafka_ms] * len(values),
        "value": pa.array(values, pa.binary()),
    })


def test_rejected_records_point_at_their_offsets_with_their_kafka_timestamp() -> None:
    values: list[bytes | None] = [
        json.dumps(GOOD).encode(),
        b"not json",
        json.dumps({**GOOD, "price": -1.0, "trade_id": 2}).encode(),
        b"{broken",
        json.dumps({**GOOD, "trade_id": 3, "timestamp_ms": 10**15}).encode(),  # skew rule
        None,
        json.dumps({**GOOD, "trade_id": 4}, indent=1).encode(),  # newlines inside the value
    ]
    parsed = parse_kafka_lines(records_as_json_lines(records(values)), "kafka:trades/0", 0)
    valid = parsed.filter(parsed["reject_reason"].is_null())
    assert sorted(valid["trade_id"].to_pylist()) == [1, 4]
    rejected = {r["row_number"]: r for r in parsed.to_pylist() if r["reject_reason"]}
    assert sorted(rejected) == [11, 12, 13, 14, 15]
    assert rejected[11]["reject_reason"] == NOT_AN_OBJECT
    assert rejected[13]["reject_reason"] == NOT_AN_OBJECT
    assert rejected[15]["reject_reason"] == NOT_AN_OBJECT
    assert rejected[12]["reject_reason"] == "price must be positive"
    assert "ahead of the record's ingestion time" in rejected[14]["reject_reason"]
    for offset, row in rejected.items():
        assert row["source"] == "kafka:trades/0"
        line = json.loads(row["raw"])
        assert (line["kafka_offset"], line["kafka_timestamp_ms"]) == (offset, 5_000)


def test_positions_parse_to_offsets_or_times_and_refuse_empty_ends() -> None:
    assert KafkaPosition.parse("earliest").spark_options("t", [0], start=True) == {
        "startingOffsets": "earliest"}
    assert KafkaPosition.parse("2018-05-08T12:00:00+02:00").timestamp_ms == 1_525_773_600_000
    assert KafkaPosition.parse('{"1": 4}').spark_options("t", [0, 1], start=False) == {
        "endingOffsets": '{"t": {"1": 4}}'}
    with pytest.raises(KafkaInputError, match="latest"):
        KafkaPosition.parse("latest").spark_options("t", [0], start=True)
    with pytest.raises(KafkaInputError, match="earliest"):
        KafkaPosition.parse("earliest").spark_options("t", [0], start=False)
    with pytest.raises(ValueError, match="Kafka position"):
        KafkaPosition.parse("yesterday")

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


def test_the_skew_limit_is_the_configured_one_as_in_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trade stamped 90 minutes ahead of its Kafka timestamp: rejected under the default 1 h,
    kept under 2 h, whether the limit comes from the stream's variable or the option."""
    from batch.backfill_trades import build_parser, config_from_args

    ahead = json.dumps({**GOOD, "timestamp_ms": 5_000 + 90 * 60_000}).encode()
    lines = records_as_json_lines(records([ahead]))
    common = ["--input", "trades.csv", "--start", "2018-05-08", "--end", "2018-05-09",
              "--pairs", "XBT/USD", "--output", "out"]

    def kept(skew_ms: int) -> bool:
        parsed = parse_kafka_lines(lines, "kafka:trades/0", 0, max_event_time_skew_ms=skew_ms)
        return parsed["reject_reason"].null_count == 1

    monkeypatch.delenv("BRAID_MAX_EVENT_TIME_SKEW", raising=False)
    default = config_from_args(build_parser().parse_args(common)).max_event_time_skew_ms
    assert default == 3_600_000 and not kept(default)
    monkeypatch.setenv("BRAID_MAX_EVENT_TIME_SKEW", "2h")
    from_env = config_from_args(build_parser().parse_args(common)).max_event_time_skew_ms
    assert from_env == 7_200_000 and kept(from_env)
    option = build_parser().parse_args([*common, "--max-event-time-skew", "100m"])
    assert config_from_args(option).max_event_time_skew_ms == 6_000_000


def test_a_trade_keyed_other_than_its_pair_is_refused_as_the_stream_refuses_it() -> None:
    """The stream dead-letters an otherwise valid trade whose Kafka key is not its pair (it is
    not on its pair's partition); the batch reading the same records refuses the same ones with
    the same reasons (an invalid trade keeps its own reason first, in both)."""
    import numpy as np

    from streaming.processors.trade_decoding import decode_trades
    from streaming.runtime.records import InputBatch

    wire = {**GOOD, "v": 1}  # the stream's wire format carries its schema version
    values: list[bytes | None] = [json.dumps({**wire, "trade_id": i}).encode() for i in range(5)]
    values.append(json.dumps({**wire, "trade_id": 5, "price": -1.0}).encode())
    keys: list[bytes | None] = [b"XBT/USD", b"ETH/USD", None, b"", b"\xff\xfe", b"ETH/USD"]
    table = records(values).append_column("key", pa.array(keys, pa.binary()))
    parsed = parse_kafka_lines(records_as_json_lines(table), "kafka:trades/0", 0)
    batch_rejected = {r["row_number"]: r["reject_reason"] for r in parsed.to_pylist()
                      if r["reject_reason"]}
    assert parsed.filter(parsed["reject_reason"].is_null())["trade_id"].to_pylist() == [0]

    stream = decode_trades(InputBatch("trades", 0, np.arange(10, 16, dtype=np.int64), keys,
                                      values, np.full(6, 5_000, dtype=np.int64)))
    stream_rejected = {d.offset: d.reason for d in stream.dead_letters}
    assert sorted(batch_rejected) == sorted(stream_rejected) == [11, 12, 13, 14, 15]
    assert all(batch_rejected[o] == stream_rejected[o] for o in (11, 12, 13, 14))
    assert "price must be positive" in stream_rejected[15]
    assert batch_rejected[11] == ("key: the record has key 'ETH/USD', not its pair's key "
                                  "'XBT/USD', so it is not on its pair's partition")
    assert batch_rejected[12].startswith("key: the record has no key, not its pair's key")
    assert batch_rejected[13].startswith("key: the record has key '', not")
    assert batch_rejected[15] == "price must be positive"

"""Event-time sanity: a record stamped too far ahead of its ingestion time (its Kafka timestamp)
is invalid in both engines and never moves stream time (`features.event_time`)."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.trade_files import parse_trade_file
from features.event_time import (
    DEFAULT_MAX_EVENT_TIME_SKEW_MS,
    NO_INGESTION_TIME,
    ahead_of_ingestion,
    skew_reason,
)
from features.sensors.schemas import READING_ARROW_SCHEMA
from features.windows import TumblingWindow
from streaming.processors.sensor_decoding import decode_readings
from streaming.processors.trade_decoding import decode_trades
from streaming.runtime.records import InputBatch, merged_timestamps
from streaming.settings import EventTimeSettings
from tests.support.entity_keys import entity_keys
from tests.support.operator_harness import candle_operator

HOUR = 3_600_000
NOW = 1_764_000_000_000  # 2025-11-24: the ingestion time of the records below
PROBE = 10**18  # the probe's trade: the year 33658


def _trade(ts: int, trade_id: int = 1, pair: str = "XBT/USD") -> dict[str, object]:
    return {"v": 1, "pair": pair, "price": 100.0, "volume": 1.0, "side": "buy",
            "order_type": "market", "trade_id": trade_id, "timestamp_ms": ts}


def _batch(values: list[bytes | None], stamps: list[int] | None, topic: str = "trades",
           first: int = 0) -> InputBatch:
    offsets = np.arange(first, first + len(values), dtype=np.int64)
    return InputBatch(topic, 0, offsets, entity_keys(values), values,
                      None if stamps is None else np.asarray(stamps, dtype=np.int64))


# --- the pure rule -------------------------------------------------------------------------------

def test_an_event_time_more_than_the_maximum_skew_ahead_of_ingestion_is_invalid() -> None:
    event = np.array([NOW, NOW + HOUR, NOW + HOUR + 1, PROBE, NOW - 10 * 365 * 24 * HOUR])
    ahead = ahead_of_ingestion(event, np.full(5, NOW), HOUR)
    # exactly the maximum is still valid; the past is lateness's business, never this rule's
    assert ahead.tolist() == [False, False, True, True, False]


def test_without_an_ingestion_time_the_rule_does_not_apply() -> None:
    assert not ahead_of_ingestion(np.array([PROBE]), np.array([NO_INGESTION_TIME]), HOUR).any()


def test_extreme_values_do_not_overflow() -> None:
    top = np.iinfo(np.int64).max
    event = np.array([top, -top, top, 0])
    ingestion = np.array([0, top, top, top])
    assert ahead_of_ingestion(event, ingestion, HOUR).tolist() == [True, False, False, False]
    assert ahead_of_ingestion(np.array([top]), np.array([0]), top).tolist() == [False]
    with pytest.raises(ValueError):
        ahead_of_ingestion(event, ingestion, -1)


def test_the_setting_defaults_to_the_definition_s_one_hour(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRAID_MAX_EVENT_TIME_SKEW", raising=False)
    assert EventTimeSettings().max_event_time_skew_ms == DEFAULT_MAX_EVENT_TIME_SKEW_MS == HOUR
    monkeypatch.setenv("BRAID_MAX_EVENT_TIME_SKEW", "5m")
    assert EventTimeSettings().max_event_time_skew_ms == 300_000


# --- the stream ----------------------------------------------------------------------------------

@pytest.mark.parametrize("with_bad_json", [False, True], ids=["fast path", "message by message"])
def test_a_trade_stamped_far_ahead_of_its_kafka_timestamp_is_dead_lettered(
        with_bad_json: bool) -> None:
    values: list[bytes | None] = [orjson.dumps(_trade(NOW - 1000, 1)),
                                  orjson.dumps(_trade(PROBE, 2)),
                                  orjson.dumps(_trade(NOW + HOUR, 3))]
    if with_bad_json:
        values.append(b"not json")
    decoded = decode_trades(_batch(values, [NOW] * len(values)))
    assert decoded.offsets.tolist() == [0, 2]
    letters = {letter.offset: letter.reason for letter in decoded.dead_letters}
    assert letters[1] == "invalid: " + skew_reason(HOUR)
    assert len(letters) == 1 + with_bad_json


def test_the_maximum_skew_is_configurable() -> None:
    values: list[bytes | None] = [orjson.dumps(_trade(NOW + 2 * HOUR))]
    assert decode_trades(_batch(values, [NOW]), 3 * HOUR).offsets.tolist() == [0]
    assert decode_trades(_batch(values, [NOW]), HOUR).offsets.tolist() == []


def test_a_batch_without_kafka_timestamps_is_not_judged_by_skew() -> None:
    decoded = decode_trades(_batch([orjson.dumps(_trade(PROBE))], None))
    assert decoded.offsets.tolist() == [0]


def test_the_probe_trade_does_not_move_stream_time_and_the_pair_keeps_its_candles() -> None:
    """The probe of issue 10, without a broker: one XBT/USD trade at 10**18 between normal
    ones. It is dead-lettered, and every later XBT/USD trade still makes candles."""
    operator = candle_operator([TumblingWindow(60_000, 5_000)])
    start = NOW - NOW % 60_000
    trades = [_trade(start + 1_000, 1), _trade(PROBE, 2),
              *(_trade(start + 60_000 * m + 2_000, 3 + m) for m in range(1, 4))]
    values: list[bytes | None] = [orjson.dumps(t) for t in trades]
    stamps = [NOW + 1_000 + 60_000 * i for i in range(len(values))]  # ingested as they happen
    emission = operator.process(_batch(values, stamps), NOW)
    assert [(d.offset, d.reason) for d in emission.dead_letters] == [
        (1, "invalid: " + skew_reason(HOUR))]
    starts = sorted(orjson.loads(r.value)["window_start_ms"] for r in emission.records)
    # stream time (the last trade, 3 min + 2 s) closed the windows ending 5 s of grace before it
    assert starts == [start + 60_000 * m for m in range(2)]
    assert int(operator.stream_time.max()) < PROBE


def test_a_sensor_reading_stamped_far_ahead_is_dead_lettered() -> None:
    values: list[bytes | None] = [
        orjson.dumps({"v": 1, "client": "c1", "timestamp_ms": ts, "value": 1.5})
        for ts in (NOW, NOW + HOUR + 1, NOW - HOUR)]
    decoded = decode_readings(_batch(values, [NOW] * 3, "SZ"), "SZ")
    assert decoded.offsets.tolist() == [0, 2]
    assert decoded.reasons.tolist() == [None, "invalid: " + skew_reason(HOUR), None]
    assert decoded.table.schema.names == READING_ARROW_SCHEMA.names
    unjudged = decode_readings(_batch(values, None, "SZ"), "SZ")
    assert unjudged.offsets.tolist() == [0, 1, 2]


def test_merged_batches_keep_their_timestamps_only_when_all_have_them() -> None:
    a = _batch([b"{}"], [5])
    b = _batch([b"{}"], [7], first=1)
    assert merged_timestamps([a, b]).tolist() == [5, 7]  # type: ignore[union-attr]
    assert merged_timestamps([a, _batch([b"{}"], None)]) is None


# --- the batch engine: archives that keep the Kafka timestamp ---------------------------------

def _jsonl(rows: list[dict[str, object]]) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


@pytest.mark.parametrize("with_bad_line", [False, True], ids=["fast path", "line by line"])
def test_the_backfill_rejects_the_same_trades_from_an_archive_with_kafka_timestamps(
        with_bad_line: bool) -> None:
    rows = [{**_trade(ts, i), "kafka_timestamp_ms": NOW}
            for i, ts in enumerate((NOW - 1000, PROBE, NOW + HOUR))]
    content = _jsonl(rows) + (b"\n{not json" if with_bad_line else b"")
    parsed = parse_trade_file(content, "trades-archive.jsonl", 0)
    reasons = parsed["reject_reason"].to_pylist()
    assert reasons[:3] == [None, skew_reason(HOUR), None]
    # the stream's dead letter says the same, with its "invalid: " category
    stream = decode_trades(_batch([orjson.dumps({k: v for k, v in r.items()
                                                 if k != "kafka_timestamp_ms"}) for r in rows],
                                  [NOW] * 3))
    assert [d.reason for d in stream.dead_letters] == ["invalid: " + reasons[1]]


def test_archive_lines_without_a_kafka_timestamp_are_not_judged_by_skew() -> None:
    rows = [_trade(PROBE, 1), {**_trade(PROBE, 2), "kafka_timestamp_ms": None}]
    parsed = parse_trade_file(_jsonl(rows), "trades.jsonl", 0)
    assert parsed["reject_reason"].to_pylist() == [None, None]


def test_a_parquet_archive_with_kafka_timestamps_is_judged_too(tmp_path) -> None:
    table = pa.Table.from_pylist([{**_trade(ts, i), "kafka_timestamp_ms": NOW}
                                  for i, ts in enumerate((NOW, PROBE))])
    pq.write_table(table, tmp_path / "t.parquet")
    parsed = parse_trade_file((tmp_path / "t.parquet").read_bytes(), "t.parquet", 0,
                              max_event_time_skew_ms=HOUR)
    assert parsed["reject_reason"].to_pylist() == [None, skew_reason(HOUR)]


def test_a_kraken_csv_has_no_ingestion_time_so_the_rule_does_not_apply() -> None:
    year_2100_s = 4_102_444_800  # far ahead of any ingestion, were there one
    content = b"Time,Price,Amount\n" + f"{year_2100_s},100.0,1.0\n".encode()
    parsed = parse_trade_file(content, "XBTUSD_kraken_trades.csv", 0)
    assert parsed["reject_reason"].to_pylist() == [None]


def test_the_sensor_archive_keeps_each_reading_s_kafka_timestamp(tmp_path) -> None:
    """So a backfill of the archive can apply the same rule (null where the broker gave none)."""
    from features.sensors.schemas import READING_WIRE_SCHEMA
    from streaming.sinks.gcs_parquet_archive import ArchiveConfig, ArchiveOperator
    from streaming.sinks.object_store import LocalStore

    store = LocalStore(str(tmp_path))
    operator = ArchiveOperator(ArchiveConfig({"SZ": READING_WIRE_SCHEMA}, max_rows=2), store, 0)
    values: list[bytes | None] = [
        orjson.dumps({"v": 1, "client": "c1", "timestamp_ms": ts, "value": 1.0})
        for ts in (NOW, PROBE)]
    operator.process(_batch(values, [NOW, NO_INGESTION_TIME], "SZ"), NOW)
    names = [n for n in store.list("topic=SZ/") if n.endswith(".parquet")]  # one per date
    archived = pa.concat_tables([pq.read_table(tmp_path / n) for n in names]).sort_by("offset")
    assert archived["kafka_timestamp_ms"].to_pylist() == [NOW, None]


def test_the_sensors_backfill_drops_the_readings_the_stream_dead_letters(tmp_path) -> None:
    """The archive operator's own output, read by the backfill's rule: the readings the stream's
    decoder dead-letters for skew are exactly those the backfill drops (an unknown Kafka
    timestamp is not judged; exactly the maximum ahead is still valid)."""
    from batch.sensors_backfill import valid_readings
    from features.sensors.schemas import READING_WIRE_SCHEMA
    from streaming.sinks.gcs_parquet_archive import ArchiveConfig, ArchiveOperator
    from streaming.sinks.object_store import LocalStore

    week = 168 * HOUR  # readings have an absolute bound too (the year 2248)
    cases = [(NOW, NOW), (NOW + HOUR, NOW), (NOW + HOUR + 1, NOW), (NOW + week, NOW),
             (NOW + week, NO_INGESTION_TIME), (NOW - HOUR, NOW)]
    values: list[bytes | None] = [
        orjson.dumps({"v": 1, "client": "c1", "timestamp_ms": ts, "value": 1.0})
        for ts, _ in cases]
    batch = _batch(values, [stamp for _, stamp in cases], "SZ")
    stream = decode_readings(batch, "SZ", HOUR)
    assert stream.offsets.tolist() == [0, 1, 4, 5]

    store = LocalStore(str(tmp_path))
    operator = ArchiveOperator(ArchiveConfig({"SZ": READING_WIRE_SCHEMA}, max_rows=6), store, 0)
    operator.process(batch, NOW)
    names = [n for n in store.list("topic=SZ/") if n.endswith(".parquet")]
    archived = pa.concat_tables([pq.read_table(tmp_path / n) for n in names])
    kept = valid_readings(archived, "SZ", HOUR)
    assert sorted(kept["offset"].to_pylist()) == [0, 1, 4, 5]
    assert sorted(valid_readings(archived, "SZ", 2 * HOUR)["offset"].to_pylist()) == [
        0, 1, 2, 4, 5]
    # an archive written before the column existed: the rule cannot apply
    assert valid_readings(archived.drop(["kafka_timestamp_ms"]), "SZ", HOUR).num_rows == 6

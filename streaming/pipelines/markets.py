"""The markets speed layer: trades -> candles -> technical indicators.

`candle_processor` and `indicator_processor` build the two long-running processors;
`run_trades_through_stream` pushes a table of trades through both on a real broker and reads
the results back (the streaming half of the Lambda test and of the replay benchmark).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import orjson
import pyarrow as pa
from confluent_kafka import Producer

from features.event_time import DEFAULT_MAX_EVENT_TIME_SKEW_MS
from features.indicators import INDICATOR_COLUMNS
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA
from features.schemas.window_closure import ClosureRule, WindowClosure
from features.windows import TumblingWindow, parse_duration_ms
from streaming.partitioning import partition_for
from streaming.processors.candles import DEFAULT_LIVE_LAG_MS, CandleConfig, CandleOperator
from streaming.processors.indicators import IndicatorConfig, IndicatorOperator
from streaming.runtime.clients import make_producer
from streaming.runtime.deliveries import Deliveries
from streaming.runtime.processor import ProcessorConfig, StreamProcessor
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, MarketsSettings, TopicSettings
from streaming.topics import (
    CANDLES,
    CHECKPOINTS,
    DEAD_LETTER,
    INDICATORS,
    TRADES,
    TopicSpec,
    catalogue,
    ensure_topics,
)


@dataclass(frozen=True)
class MarketsTopics:
    """Topic names of one markets pipeline (a prefix isolates test runs on a shared broker)."""

    trades: str = TRADES
    candles: str = CANDLES
    indicators: str = INDICATORS
    dead_letter: str = DEAD_LETTER
    checkpoints: str = CHECKPOINTS

    @classmethod
    def prefixed(cls, prefix: str) -> MarketsTopics:
        return cls(*(prefix + name for name in (TRADES, CANDLES, INDICATORS, DEAD_LETTER,
                                                CHECKPOINTS)))

    def specs(self, partitions: int) -> list[TopicSpec]:
        """The catalogue's specs of these topics, renamed; keyed topics get `partitions`."""
        names = dict(zip((TRADES, CANDLES, INDICATORS, DEAD_LETTER, CHECKPOINTS),
                         (self.trades, self.candles, self.indicators, self.dead_letter,
                          self.checkpoints), strict=True))
        keyed = {TRADES, CANDLES, INDICATORS}
        return [
            replace(spec, name=names[spec.name],
                    partitions=partitions if spec.name in keyed else spec.partitions)
            for spec in catalogue()
            if spec.name in names
        ]


def windows_from(settings: MarketsSettings) -> tuple[TumblingWindow, ...]:
    grace = parse_duration_ms(settings.grace)
    return tuple(TumblingWindow(parse_duration_ms(d), grace) for d in settings.candle_durations)


def candle_processor(
    kafka: KafkaSettings,
    windows: tuple[TumblingWindow, ...],
    *,
    topics: MarketsTopics = MarketsTopics(),
    idle_timeout_ms: int = 10_000,
    live_lag_ms: int = DEFAULT_LIVE_LAG_MS,
    group: str = "braid-candles",
    batch_size: int = 10_000,
    poll_timeout_s: float = 0.1,
    consumer_overrides: dict[str, str | int | bool] | None = None,
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
) -> StreamProcessor:
    """The candle processor: `trades` -> final candles; a quiet live pair's windows close on
    idle through closure records it writes back into `trades` (`processors.candles`)."""
    config = CandleConfig(windows, topics.candles, idle_timeout_ms, max_event_time_skew_ms,
                          live_lag_ms=live_lag_ms, group=group)
    return StreamProcessor(
        kafka,
        ProcessorConfig(group, (topics.trades,), batch_size=batch_size,
                        poll_timeout_s=poll_timeout_s,
                        dead_letter_topic=topics.dead_letter,
                        checkpoint_topic=topics.checkpoints,
                        consumer_overrides=consumer_overrides or {}),
        lambda partition: CandleOperator(config, partition),
    )


def indicator_processor(
    kafka: KafkaSettings,
    *,
    topics: MarketsTopics = MarketsTopics(),
    group: str = "braid-indicators",
) -> StreamProcessor:
    config = IndicatorConfig(topics.indicators)
    return StreamProcessor(
        kafka,
        ProcessorConfig(group, (topics.candles,), dead_letter_topic=topics.dead_letter,
                        checkpoint_topic=topics.checkpoints),
        lambda partition: IndicatorOperator(config, partition),
    )


def produce_trades(kafka: KafkaSettings, topic: str, trades: pa.Table, partitions: int, *,
                   close_windows_at_end: bool = False) -> int:
    """Produce trades (in row order) as wire JSON keyed by pair; returns the count. With
    `close_windows_at_end`, the input ends there: an end-of-input closure record per pair
    follows its trades (`features.schemas.window_closure`), so its last windows close."""
    producer, deliveries = make_producer(kafka), Deliveries()
    rows = trades.to_pylist()
    for row in rows:
        _send(producer, topic, row["pair"], orjson.dumps({"v": 1, **row}), partitions,
              deliveries)
        producer.poll(0)
    if close_windows_at_end:
        for closure in end_of_input_closures(trades, by="produce_trades"):
            _send(producer, topic, closure.pair, closure.to_wire(), partitions, deliveries)
    if producer.flush(60) or deliveries.error is not None:
        raise RuntimeError(f"trades were not all delivered: {deliveries.error}")
    return len(rows)


def close_input(kafka: KafkaSettings, topic: str, trades: pa.Table, partitions: int) -> None:
    """Say in the log that the input `trades` (produced before) has ended: an end-of-input
    closure record per pair, on its partition, through its largest event time."""
    producer, deliveries = make_producer(kafka), Deliveries()
    for closure in end_of_input_closures(trades, by="close_input"):
        _send(producer, topic, closure.pair, closure.to_wire(), partitions, deliveries)
    if producer.flush(60) or deliveries.error is not None:
        raise RuntimeError(f"closure records were not all delivered: {deliveries.error}")


def _send(producer: Producer, topic: str, pair: str, value: bytes, partitions: int,
          deliveries: Deliveries) -> None:
    """Produce one record; `deliveries` learns whether the broker refused it (a refusal shows
    only in the delivery report, never in `flush`)."""
    while True:
        try:
            producer.produce(topic, key=pair, value=value,
                             partition=partition_for(pair, partitions),
                             on_delivery=deliveries.track())
            return
        except BufferError:
            producer.poll(0.1)


def end_of_input_closures(trades: pa.Table, *, by: str) -> list[WindowClosure]:
    """One end-of-input closure record per pair of `trades`, through its largest event time."""
    if trades.num_rows == 0:
        return []
    latest = trades.group_by("pair").aggregate([("timestamp_ms", "max")]).to_pylist()
    now_ms = int(time.time() * 1000)
    return [WindowClosure(closure=ClosureRule.END_OF_INPUT, pair=row["pair"],
                          through_ms=row["timestamp_ms_max"], decided_at_ms=now_ms, by=by)
            for row in sorted(latest, key=lambda r: r["pair"])]


def read_candles(kafka: KafkaSettings, topic: str) -> pa.Table:
    rows = [orjson.loads(v) for _, _, _, v in read_topic(kafka, topic) if v is not None]
    return _latest_per_key(pa.Table.from_pylist(rows, schema=CANDLE_ARROW_SCHEMA))


def read_indicators(kafka: KafkaSettings, topic: str) -> pa.Table:
    rows = []
    for _, _, _, value in read_topic(kafka, topic):
        if value is None:
            continue
        row = orjson.loads(value)
        for column in INDICATOR_COLUMNS:
            if row[column] is None:
                row[column] = np.nan  # null on the wire means "not warmed up"
        rows.append(row)
    return _latest_per_key(pa.Table.from_pylist(rows, schema=INDICATOR_ARROW_SCHEMA))


def _latest_per_key(table: pa.Table) -> pa.Table:
    """One row per (pair, window_ms, window_start_ms), the last written, sorted by key."""
    if table.num_rows == 0:
        return table
    keys = table.select(["pair", "window_ms", "window_start_ms"]).to_pandas()
    keys = keys.drop_duplicates(keep="last")
    keys = keys.sort_values(["pair", "window_ms", "window_start_ms"], kind="stable")
    return table.take(pa.array(keys.index.to_numpy()))  # NaN stays NaN (pandas would null it)


def run_trades_through_stream(
    trades: pa.Table,
    kafka: KafkaSettings,
    *,
    durations: list[int],
    grace_ms: int,
    topic_prefix: str,
    partitions: int = 4,
    idle_timeout_ms: int = 1_000,
) -> tuple[pa.Table, pa.Table]:
    """Produce `trades` (row order = arrival order) followed by end-of-input closure records
    (the table is the whole input: its last windows close), run the candle then the indicator
    processor until idle, and return (candles, indicators) as read back from the topics."""
    topics = MarketsTopics.prefixed(topic_prefix)
    ensure_topics(kafka, topics.specs(partitions), TopicSettings())
    produce_trades(kafka, topics.trades, trades, partitions, close_windows_at_end=True)
    windows = tuple(TumblingWindow(d, grace_ms) for d in durations)
    idle_s = idle_timeout_ms / 1000
    candle_processor(kafka, windows, topics=topics, idle_timeout_ms=idle_timeout_ms,
                     group=f"{topic_prefix}candles").run(max_idle_s=idle_s + 3,
                                                         install_signals=False)
    indicator_processor(kafka, topics=topics, group=f"{topic_prefix}indicators").run(
        max_idle_s=3, install_signals=False)
    return read_candles(kafka, topics.candles), read_indicators(kafka, topics.indicators)

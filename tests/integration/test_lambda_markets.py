"""The Lambda test: the same trades through the speed layer (a real broker, the candle and
indicator processors) and through the Spark backfill give identical candles and indicators:
same keys, every value within 1e-9, NaN in the same places.

Two trade sets: the real 2018 XBT/USD and ETH/USD Kraken files (arrival = the file replay's
event-time merge), and a generated set with out-of-order and late trades (arrival = the order
generated; the backfill reads it as a Parquet archive in that order). Each set is also checked
against an in-process reference built with pandas straight from the `features/` functions, so a
failure tells which side drifted.

Third path: the Spark job reads the very `trades` topic the stream consumed (Spark's Kafka
source, a batch read of the whole topic) and writes the same candles and indicators as the
stream, value for value.

Serving: the stream's rows through the online sink into Feast's online store, and `braid
consistency`'s report over every row the sink wrote (its write log) against the backfill's
tables: 100%.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from batch.arrival_order import ArrivalOrder
from batch.backfill import BackfillConfig, run_backfill
from batch.kafka_input import KafkaInput
from batch.spark_session import spark_session
from features.kraken_formats import read_trades_csv
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA
from streaming.settings import KafkaSettings
from tests.support.lambda_checks import (
    CANDLE_FLOATS,
    INDICATOR_FLOATS,
    assert_identical,
    assert_served_rows_consistent,
    read_sorted,
    reference_outputs,
    sort_rows,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = Path(os.environ.get("BRAID_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared"
                           / "data")) / "kraken-trades"
REAL_FILES = [DATA / "XBTUSD_kraken_2018_trades.sorted.csv",
              DATA / "ETHUSD_kraken_2018_trades.sorted.csv"]
GRACE_MS = 5_000


@dataclass(frozen=True)
class TradeSet:
    """Trades in the arrival order both engines share, and how the backfill reads them."""

    name: str
    trades: pa.Table
    inputs: list[str]
    arrival: ArrivalOrder
    durations: list[int]


@dataclass(frozen=True)
class Outputs:
    candles: pa.Table
    indicators: pa.Table
    root: Path | None = None  # the backfill's Delta tables (batch outputs only)


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    yield spark_session("braid-tests", master="local[2]", shuffle_partitions=4)


def real_2018_trades() -> TradeSet:
    if not all(p.exists() for p in REAL_FILES):
        pytest.skip(f"real data {DATA} is absent")
    merged = pa.concat_tables([read_trades_csv(str(p)) for p in REAL_FILES])
    # the file replay's order: by event time, ties by file then row
    order = np.argsort(merged["timestamp_ms"].to_numpy(), kind="stable")
    return TradeSet("kraken-2018", merged.take(pa.array(order)), [str(p) for p in REAL_FILES],
                    ArrivalOrder.EVENT_TIME, [60_000, 3_600_000, 86_400_000])


def generated_trades(tmp: Path) -> TradeSet:
    from streaming.sources.synthetic import SyntheticTradeSource

    source = SyntheticTradeSource(
        count=40_000, seed=11, pairs=["XBT/USD", "ETH/USD"], calm_rate_per_s=0.1,
        busy_rate_per_s=1.0, out_of_order_fraction=0.2,
        max_disorder_ms=4_000, late_fraction=0.02, late_min_ms=10_000, late_max_ms=400_000,
    )
    trades = pa.concat_tables(list(source.batches()))
    path = tmp / "trades-archive-0001.parquet"
    pq.write_table(trades, path)
    return TradeSet("generated", trades, [str(path)], ArrivalOrder.FILE, [60_000, 300_000])


@pytest.fixture(scope="module", params=["kraken-2018", "generated"])
def trade_set(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TradeSet:
    if request.param == "kraken-2018":
        return real_2018_trades()
    return generated_trades(tmp_path_factory.mktemp("generated"))


@pytest.fixture(scope="module")
def batch_outputs(spark: SparkSession, trade_set: TradeSet,
                  tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    ts = trade_set.trades["timestamp_ms"].to_numpy()
    first = datetime.fromtimestamp(ts.min() / 1000, UTC).date()
    last = datetime.fromtimestamp(ts.max() / 1000, UTC).date()
    output = tmp_path_factory.mktemp(f"offline-{trade_set.name}")
    summary = run_backfill(spark, BackfillConfig(
        inputs=trade_set.inputs, start=first, end=last + timedelta(days=1),
        pairs=["XBT/USD", "ETH/USD"], output=str(output), durations_ms=trade_set.durations,
        grace_ms=GRACE_MS, arrival=trade_set.arrival, show_progress=False,
    ))
    assert summary.trades_valid == trade_set.trades.num_rows
    if trade_set.arrival is ArrivalOrder.FILE:
        assert sum(summary.late_trades.values()) > 0, "the generated set should have late trades"
    return Outputs(
        read_sorted(str(output / "candles"), CANDLE_ARROW_SCHEMA),
        read_sorted(str(output / "indicators"), INDICATOR_ARROW_SCHEMA),
        output,
    )


def test_backfill_equals_the_features_reference(trade_set: TradeSet,
                                                batch_outputs: Outputs) -> None:
    candles, indicators = reference_outputs(trade_set.trades, trade_set.durations, GRACE_MS)
    assert batch_outputs.candles.num_rows > 100
    assert_identical(batch_outputs.candles, candles, CANDLE_FLOATS, "candles")
    assert_identical(batch_outputs.indicators, indicators, INDICATOR_FLOATS, "indicators")


@dataclass(frozen=True)
class StreamRun:
    outputs: Outputs
    trades_topic: str  # the topic the stream consumed, left on the broker


@pytest.fixture(scope="module")
def stream_run(trade_set: TradeSet, kafka_settings: KafkaSettings) -> StreamRun:
    import uuid

    from streaming.pipelines.markets import MarketsTopics, run_trades_through_stream

    prefix = f"t{uuid.uuid4().hex[:10]}."
    candles, indicators = run_trades_through_stream(
        trade_set.trades, kafka_settings, durations=trade_set.durations, grace_ms=GRACE_MS,
        topic_prefix=prefix,
    )
    return StreamRun(Outputs(sort_rows(candles), sort_rows(indicators)),
                     MarketsTopics.prefixed(prefix).trades)


def test_stream_and_backfill_give_identical_candles_and_indicators(
    batch_outputs: Outputs, stream_run: StreamRun,
) -> None:
    stream = stream_run.outputs
    assert_identical(stream.candles, batch_outputs.candles, CANDLE_FLOATS, "candles")
    assert_identical(stream.indicators, batch_outputs.indicators, INDICATOR_FLOATS,
                     "indicators")
    assert not np.isnan(batch_outputs.indicators["sma_10"].to_numpy()).all()


def test_spark_reading_the_trades_topic_gives_the_streams_candles_and_indicators(
    spark: SparkSession, trade_set: TradeSet, stream_run: StreamRun,
    kafka_settings: KafkaSettings, tmp_path: Path,
) -> None:
    ts = trade_set.trades["timestamp_ms"].to_numpy()
    first = datetime.fromtimestamp(ts.min() / 1000, UTC).date()
    last = datetime.fromtimestamp(ts.max() / 1000, UTC).date()
    summary = run_backfill(spark, BackfillConfig(
        inputs=[], kafka=KafkaInput(kafka_settings.bootstrap_servers, stream_run.trades_topic),
        start=first, end=last + timedelta(days=1), pairs=["XBT/USD", "ETH/USD"],
        output=str(tmp_path), durations_ms=trade_set.durations, grace_ms=GRACE_MS,
        arrival=ArrivalOrder.FILE, show_progress=False,
    ))
    assert summary.trades_valid == trade_set.trades.num_rows
    assert summary.rejected_rows == 0
    candles = read_sorted(str(tmp_path / "candles"), CANDLE_ARROW_SCHEMA)
    indicators = read_sorted(str(tmp_path / "indicators"), INDICATOR_ARROW_SCHEMA)
    assert candles.num_rows > 100
    assert_identical(candles, stream_run.outputs.candles, CANDLE_FLOATS, "candles")
    assert_identical(indicators, stream_run.outputs.indicators, INDICATOR_FLOATS, "indicators")
    if trade_set.arrival is ArrivalOrder.FILE:
        assert sum(summary.late_trades.values()) > 0, "late trades come from the topic's order"


def test_stream_rows_served_online_equal_the_backfill_in_the_consistency_report(
    trade_set: TradeSet, batch_outputs: Outputs, stream_run: StreamRun, tmp_path: Path,
) -> None:
    """The stream's rows through the online sink; `braid consistency` over every row it
    wrote against the backfill's tables: 100% (`tests.support.lambda_checks`)."""
    assert batch_outputs.root is not None
    ts = trade_set.trades["timestamp_ms"].to_numpy()
    start = datetime.fromtimestamp(ts.min() / 1000, UTC).replace(hour=0, minute=0, second=0,
                                                                microsecond=0)
    end = datetime.fromtimestamp(ts.max() / 1000, UTC) + timedelta(days=1)
    compared = assert_served_rows_consistent(
        stream_run.outputs.candles, stream_run.outputs.indicators, batch_outputs.root,
        tmp_path / "repo", start, end)
    assert compared > 50

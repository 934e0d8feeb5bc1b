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

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from batch import delta_log
from batch.arrival_order import ArrivalOrder
from batch.backfill import BackfillConfig, run_backfill
from batch.kafka_input import KafkaInput
from batch.spark_session import spark_session
from features.candles import aggregate_trades, finalize
from features.indicators import INDICATOR_COLUMNS, compute_indicators
from features.kraken_formats import read_trades_csv
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA
from features.windows import NO_STREAM_TIME, TumblingWindow, late_mask
from streaming.settings import KafkaSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "kraken-trades"
REAL_FILES = [DATA / "XBTUSD_kraken_2018_trades.sorted.csv",
              DATA / "ETHUSD_kraken_2018_trades.sorted.csv"]
GRACE_MS = 5_000
KEY = ["pair", "window_ms", "window_start_ms"]
CANDLE_FLOATS = ["open", "high", "low", "close", "volume", "vwap"]
INDICATOR_FLOATS = ["close", *INDICATOR_COLUMNS]


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


def read_sorted(uri: str, schema: pa.Schema) -> pa.Table:
    return sort_rows(delta_log.read_table(uri).select(schema.names).cast(schema))


def sort_rows(table: pa.Table) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in KEY])


def reference_outputs(trade_set: TradeSet) -> Outputs:
    """pandas + features/ only: per pair in arrival order, lateness, candles, indicators."""
    frame = trade_set.trades.to_pandas()
    candles, indicators = [], []
    for pair, trades in frame.groupby("pair", sort=True):
        ts = trades["timestamp_ms"].to_numpy()
        key = np.zeros(len(trades), dtype=np.int64)
        for size in trade_set.durations:
            window = TumblingWindow(size, GRACE_MS)
            ok = ~late_mask(window, key, ts, np.array([NO_STREAM_TIME]))
            c = finalize(aggregate_trades(
                window, key[ok], ts[ok], trades["trade_id"].to_numpy()[ok],
                trades["price"].to_numpy()[ok], trades["volume"].to_numpy()[ok],
            ))
            part = pd.DataFrame({
                "pair": pair, "window_ms": size, "window_start_ms": c["window_start_ms"],
                "window_end_ms": c["window_start_ms"] + size,
                **{n: c[n] for n in (*CANDLE_FLOATS, "trade_count")},
            })
            candles.append(part)
            values = compute_indicators({n: c[n] for n in ("open", "high", "low", "close",
                                                           "volume")})
            indicators.append(part[["pair", "window_ms", "window_start_ms", "window_end_ms",
                                    "close"]].assign(**values))
    return Outputs(to_table(pd.concat(candles), CANDLE_ARROW_SCHEMA),
                   to_table(pd.concat(indicators), INDICATOR_ARROW_SCHEMA))


def to_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Column by column from numpy, so NaN stays NaN (pandas conversion would make it null)."""
    columns = [pa.array(frame[f.name].to_numpy(), f.type) for f in schema]
    return sort_rows(pa.Table.from_arrays(columns, schema=schema))


def assert_identical(got: pa.Table, want: pa.Table, floats: list[str], label: str) -> None:
    """Same keys, integers equal, floats within 1e-9, NaN at the same places."""
    got_keys = list(zip(*(got[k].to_pylist() for k in KEY), strict=True))
    want_keys = list(zip(*(want[k].to_pylist() for k in KEY), strict=True))
    missing, extra = set(want_keys) - set(got_keys), set(got_keys) - set(want_keys)
    assert not missing and not extra, (
        f"{label}: {len(missing)} missing, {len(extra)} extra keys, e.g. "
        f"{sorted(missing)[:3]} / {sorted(extra)[:3]}")
    assert len(got_keys) == len(set(got_keys)), f"{label}: duplicate keys"
    for name in got.column_names:
        if name in floats:
            a, b = got[name].to_numpy(), want[name].to_numpy()
            nan_a, nan_b = np.isnan(a), np.isnan(b)
            assert np.array_equal(nan_a, nan_b), f"{label}.{name}: NaN positions differ"
            worst = float(np.max(np.abs(a[~nan_a] - b[~nan_b]), initial=0.0))
            assert worst <= 1e-9, f"{label}.{name}: largest difference {worst}"
        else:
            assert got[name].to_pylist() == want[name].to_pylist(), f"{label}.{name}"


def test_backfill_equals_the_features_reference(trade_set: TradeSet,
                                                batch_outputs: Outputs) -> None:
    reference = reference_outputs(trade_set)
    assert batch_outputs.candles.num_rows > 100
    assert_identical(batch_outputs.candles, reference.candles, CANDLE_FLOATS, "candles")
    assert_identical(batch_outputs.indicators, reference.indicators, INDICATOR_FLOATS,
                     "indicators")


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
    """The stream's candles and indicators go through the online sink in batches of 500, as a
    replay of the topics would (the newest row per pair and view of a batch is written and
    logged); the consistency report then judges every logged row against the backfill's Delta
    tables at the same event time (Feast's DuckDB offline store over them)."""
    import orjson

    from serving.consistency import consistency_report, written_rows
    from streaming.runtime.records import InputBatch
    from streaming.sinks.online_store import OnlineSinkOperator, OnlineWriter
    from tests.integration.serving.offline_tables import local_repo

    assert batch_outputs.root is not None
    store = local_repo(tmp_path / "repo", batch_outputs.root)
    operator = OnlineSinkOperator(OnlineWriter(store), {"candles": "candles",
                                                        "technical_indicators": "indicators"},
                                  log_topic="online_writes")
    logged: list[bytes] = []
    for topic, table in (("candles", stream_run.outputs.candles),
                         ("technical_indicators", stream_run.outputs.indicators)):
        rows = sorted(table.to_pylist(), key=lambda r: (r["window_end_ms"], r["pair"]))
        for first in range(0, len(rows), 500):
            values: list[bytes | None] = [orjson.dumps(r) for r in rows[first:first + 500]]
            emission = operator.process(InputBatch(topic, 0, np.arange(len(values)),
                                                   [None] * len(values), values), 0)
            # durations the repository has no view for (1d, 5m) are refused by name
            assert all(d.reason.startswith("online-sink: no feature view")
                       for d in emission.dead_letters), emission.dead_letters[:1]
            logged += [r.value for r in emission.records]
    written = written_rows(logged)
    assert set(written) >= {"candles_1m", "indicators_1m"}
    ts = trade_set.trades["timestamp_ms"].to_numpy()
    start = datetime.fromtimestamp(ts.min() / 1000, UTC).replace(hour=0, minute=0, second=0,
                                                                microsecond=0)
    end = datetime.fromtimestamp(ts.max() / 1000, UTC) + timedelta(days=1)
    report = consistency_report(store, start, end, "markets", written)
    for view in report.views:
        assert view.compared == len(written.get(view.view, {})), view
        assert (view.missing, view.extra) == (0, 0), view
    assert sum(v.compared for v in report.views) > 50
    mismatched = [(f.view, f.feature, f.examples[:1]) for f in report.features
                  if f.match_rate < 1.0]
    assert mismatched == []

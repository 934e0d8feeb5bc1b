"""Backfilled ranges on sparse pairs: warm-up history by candle count, not by a time span.

EOS/USD (gaps of 16-58 hours) and USDT/USD (about 137 traded minutes a day) from the 2018 Kraken
files, candles of 1m, 1h and 1d. The same trades backfilled as one range and as consecutive
ranges (each range's input holding only its own days, so every earlier candle must come from
the `candles` table) give identical candle and indicator tables; and those equal what the
stream's indicator operator emits when fed the same candles. Indicator tasks are month chunks
(`batch.indicators_job`): the whole range crosses June 1, so the June chunk of every series takes
its warm-up from May's candles (days back, for the sparse pairs), and the daily series' June
chunk from all of them (fewer than `MAX_WARMUP - 1`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from batch import delta_log
from batch.backfill import BackfillConfig, run_backfill
from batch.spark_session import spark_session
from features.indicators import INDICATOR_COLUMNS, MAX_WARMUP
from features.kraken_formats import read_trades_csv
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA, record_key
from streaming.processors.indicators import IndicatorConfig, IndicatorOperator
from streaming.runtime.records import InputBatch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "kraken-trades"
FILES = {"EOS/USD": DATA / "EOSUSD_kraken_2018_trades.sorted.csv",
         "USDT/USD": DATA / "USDTUSD_kraken_2018_trades.sorted.csv"}
DURATIONS = [60_000, 3_600_000, 86_400_000]
FIRST_DAY, STOP_DAY = "2018-05-07", "2018-06-15"
RANGES = [("2018-05-07", "2018-05-28"), ("2018-05-28", "2018-06-15")]
KEY = [("pair", "ascending"), ("window_ms", "ascending"), ("window_start_ms", "ascending")]


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    yield spark_session("braid-tests", master="local[2]", shuffle_partitions=4)


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Each range's trades of both pairs, as a Parquet archive in the trade schema."""
    missing = [p for p in FILES.values() if not p.exists()]
    if missing:
        pytest.skip(f"real trade data not found: {missing[0]} (../shared/data is absent)")
    trades = pa.concat_tables([read_trades_csv(str(p)) for p in FILES.values()])
    folder = tmp_path_factory.mktemp("ranges")
    out = {}
    for first, stop in RANGES:
        part = trades.filter(pc.and_(pc.greater_equal(trades["timestamp_ms"], _ms(first)),
                                     pc.less(trades["timestamp_ms"], _ms(stop))))
        out[(first, stop)] = folder / f"{first}_{stop}.parquet"
        pq.write_table(part, out[(first, stop)])
    return out


def _ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").timestamp() * 1000)


def _backfill(spark: SparkSession, inputs: list[Path], first: str, stop: str,
              output: Path) -> None:
    run_backfill(spark, BackfillConfig(
        inputs=[str(i) for i in inputs], start=date.fromisoformat(first),
        end=date.fromisoformat(stop), pairs=list(FILES), output=str(output),
        durations_ms=DURATIONS, show_progress=False,
    ))


def _table(output: Path, name: str, schema: pa.Schema) -> pa.Table:
    rows = delta_log.read_table(str(output / name))
    return rows.select(schema.names).cast(schema).sort_by(KEY)


def _assert_same(got: pa.Table, want: pa.Table) -> None:
    assert got.num_rows == want.num_rows
    for name in got.column_names:
        a, b = got[name].to_numpy(zero_copy_only=False), want[name].to_numpy(zero_copy_only=False)
        if a.dtype.kind == "f":
            assert np.array_equal(np.isnan(a), np.isnan(b)), f"NaN places differ in {name}"
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=0, equal_nan=True, err_msg=name)
        else:
            assert np.array_equal(a, b), name


def _stream_indicators(candles: pa.Table, batch_size: int = 700) -> pa.Table:
    """What the stream's indicator operator emits for these candles, in the candle topic's
    order (window end), fed in micro-batches."""
    ordered = candles.sort_by([("window_end_ms", "ascending"), ("pair", "ascending"),
                               ("window_ms", "ascending")]).to_pylist()
    operator = IndicatorOperator(IndicatorConfig("indicators"), partition=0)
    emitted: list[dict[str, object]] = []
    for lo in range(0, len(ordered), batch_size):
        part = ordered[lo : lo + batch_size]
        batch = InputBatch("candles", 0, np.arange(lo, lo + len(part), dtype=np.int64),
                           [record_key(c["pair"], c["window_ms"], c["window_start_ms"]).encode()
                            for c in part], [orjson.dumps(c) for c in part])
        emitted += [orjson.loads(r.value) for r in operator.process(batch, now_ms=0).records]
    for row in emitted:
        for column in INDICATOR_COLUMNS:
            row[column] = np.nan if row[column] is None else row[column]
    return pa.Table.from_pylist(emitted, schema=INDICATOR_ARROW_SCHEMA).sort_by(KEY)


def test_one_range_and_consecutive_ranges_give_the_same_tables_and_equal_the_stream(
    spark: SparkSession, slices: dict[tuple[str, str], Path], tmp_path: Path,
) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    _backfill(spark, list(slices.values()), FIRST_DAY, STOP_DAY, whole)
    for (first, stop), archive in slices.items():
        _backfill(spark, [archive], first, stop, split)  # earlier candles: from the table only

    candles = _table(whole, "candles", CANDLE_ARROW_SCHEMA)
    indicators = _table(whole, "indicators", INDICATOR_ARROW_SCHEMA)
    _assert_same(_table(split, "candles", CANDLE_ARROW_SCHEMA), candles)
    _assert_same(_table(split, "indicators", INDICATOR_ARROW_SCHEMA), indicators)
    _assert_same(indicators, _stream_indicators(candles))

    # the sparse 1m series reach every warm-up inside later ranges, and one range starts with
    # fewer than MAX_WARMUP candles in its own first day: its warm-up spans several days back
    usdt = indicators.filter(pc.and_(pc.equal(indicators["pair"], "USDT/USD"),
                                     pc.equal(indicators["window_ms"], 60_000)))
    late = usdt.filter(pc.greater_equal(usdt["window_start_ms"], _ms(RANGES[1][0])))
    assert late.num_rows > 0 and not np.isnan(late["adx_14"].to_numpy()).any()
    per_day = usdt.num_rows / (len(pd.date_range(FIRST_DAY, STOP_DAY)) - 1)
    assert per_day < MAX_WARMUP / 2, "USDT/USD must be sparse for this test to mean anything"

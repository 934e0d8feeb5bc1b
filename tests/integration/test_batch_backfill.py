"""The Spark trades backfill against real Spark and real Delta tables (delta-rs), on the real
2018 Kraken files: golden daily candles, idempotent ranges, warm-up across ranges, rejected rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyspark.sql import SparkSession

from batch import delta_log
from batch.backfill import BackfillConfig, BackfillSummary, run_backfill
from batch.spark_session import spark_session
from features.indicators import INDICATOR_COLUMNS
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "kraken-trades"
XBT = DATA / "XBTUSD_kraken_2018_trades.sorted.csv"
ETH = DATA / "ETHUSD_kraken_2018_trades.sorted.csv"
needs_data = pytest.mark.skipif(not XBT.exists(), reason=f"real data {DATA} is absent")
DAY = 86_400_000


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    yield spark_session("braid-tests", master="local[2]", shuffle_partitions=4)


def backfill(spark: SparkSession, inputs: Sequence[Path | str], start: str, end: str,
             output: Path | str, *, pairs: list[str], durations: list[int],
             **options: object) -> BackfillSummary:
    config = BackfillConfig(
        inputs=[str(i) for i in inputs], start=date.fromisoformat(start),
        end=date.fromisoformat(end), pairs=pairs, output=str(output), durations_ms=durations,
        show_progress=False, **options,  # type: ignore[arg-type]
    )
    return run_backfill(spark, config)


def table_rows(output: Path | str, name: str, schema: pa.Schema) -> pa.Table:
    rows = delta_log.read_table(f"{output}/{name}")
    return rows.select(schema.names).cast(schema).sort_by(
        [("pair", "ascending"), ("window_ms", "ascending"), ("window_start_ms", "ascending")]
    )


def candles_of(output: Path | str) -> pa.Table:
    return table_rows(output, "candles", CANDLE_ARROW_SCHEMA)


def indicators_of(output: Path | str) -> pa.Table:
    return table_rows(output, "indicators", INDICATOR_ARROW_SCHEMA)


def assert_tables_equal(got: pa.Table, want: pa.Table, float_columns: list[str]) -> None:
    """Same keys in the same order, floats within 1e-9, NaN in the same places."""
    assert got.num_rows == want.num_rows
    for name in ("pair", "window_ms", "window_start_ms"):
        assert got[name].to_pylist() == want[name].to_pylist(), name
    for name in float_columns:
        a, b = got[name].to_numpy(), want[name].to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"NaN positions differ in {name}"
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, equal_nan=True, err_msg=name)


def only_days(table: pa.Table, first: str, stop: str) -> pa.Table:
    lo = int(pd.Timestamp(first, tz="UTC").timestamp() * 1000)
    hi = int(pd.Timestamp(stop, tz="UTC").timestamp() * 1000)
    ws = table["window_start_ms"]
    return table.filter(pc.and_(pc.greater_equal(ws, lo), pc.less(ws, hi)))


def independent_daily_ohlc(path: Path) -> pd.DataFrame:
    """Daily OHLCV straight from the CSV with pandas (not through features/ or batch/), for the
    days the file covers fully (trades within 10 minutes of both day ends, no hour-long gap)."""
    raw = pd.read_csv(path)
    raw["ts"] = pd.to_datetime(raw["time"], unit="s", utc=True)
    raw = raw.sort_values("ts", kind="stable")
    raw["day"] = raw["ts"].dt.floor("D")
    daily = raw.groupby("day").agg(
        open=("price", "first"), high=("price", "max"), low=("price", "min"),
        close=("price", "last"), volume=("volume", "sum"), trades=("price", "size"),
        first=("ts", "min"), last=("ts", "max"),
        widest_gap=("ts", lambda s: s.diff().max()),
    )
    full = (
        (daily["first"] - daily.index < pd.Timedelta("10min"))
        & (daily.index + pd.Timedelta("1D") - daily["last"] < pd.Timedelta("10min"))
        & (daily["widest_gap"] < pd.Timedelta("1h"))
    )
    return daily[full]


@needs_data
def test_daily_candles_equal_daily_ohlc_computed_independently_from_the_csv(
    spark: SparkSession, tmp_path: Path
) -> None:
    summary = backfill(spark, [XBT, ETH], "2018-05-08", "2018-05-23", tmp_path,
                       pairs=["XBT/USD", "ETH/USD"], durations=[DAY])
    assert summary.trades_read == 152_019 + 162_235
    assert summary.rejected_rows == 0
    candles = candles_of(tmp_path).to_pandas()
    for pair, path in (("XBT/USD", XBT), ("ETH/USD", ETH)):
        golden = independent_daily_ohlc(path)
        assert len(golden) >= 5, "expected several fully covered days in the 2018 files"
        mine = candles[candles["pair"] == pair].set_index(
            pd.to_datetime(candles.loc[candles["pair"] == pair, "window_start_ms"], unit="ms",
                           utc=True)
        )
        for day, want in golden.iterrows():
            got = mine.loc[day]
            for field in ("open", "high", "low", "close"):
                assert got[field] == want[field], (pair, day, field)
            assert got["volume"] == pytest.approx(want["volume"], rel=1e-12)
            assert got["trade_count"] == want["trades"]


@needs_data
@pytest.mark.parametrize("writer", ["delta-spark", "delta-rs"])
def test_rerunning_a_range_replaces_exactly_it_and_leaves_other_ranges_untouched(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    """Both ranges lie in one month partition: the re-run replaces its days' rows only."""
    monkeypatch.setenv("BRAID_DELTA_WRITER", writer)
    hour = 3_600_000
    first = backfill(spark, [XBT], "2018-05-08", "2018-05-10", tmp_path, pairs=["XBT/USD"],
                     durations=[hour])
    after_first = candles_of(tmp_path)
    second = backfill(spark, [XBT], "2018-05-10", "2018-05-12", tmp_path, pairs=["XBT/USD"],
                      durations=[hour])
    after_second = candles_of(tmp_path)
    again = backfill(spark, [XBT], "2018-05-08", "2018-05-10", tmp_path, pairs=["XBT/USD"],
                     durations=[hour])
    after_again = candles_of(tmp_path)

    assert [first.table_versions["candles"], second.table_versions["candles"],
            again.table_versions["candles"]] == [0, 1, 2]
    keys = list(zip(after_again["window_ms"].to_pylist(),
                    after_again["window_start_ms"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys)), "duplicate candles after re-running a range"
    assert after_again.equals(after_second)
    assert only_days(after_again, "2018-05-08", "2018-05-10").equals(after_first)
    assert after_again.num_rows == first.candles_written + second.candles_written
    assert indicators_of(tmp_path).num_rows == after_again.num_rows
    if writer == "delta-spark":
        # the other range's files were not rewritten: Delta rewrites only files holding
        # replaced rows (the delta-rs writer removes the month and writes the rest again)
        files_b = (set(delta_log_files_at(tmp_path / "candles", version=1))
                   - set(delta_log_files_at(tmp_path / "candles", version=0)))
        assert files_b and files_b <= set(delta_log_files(tmp_path / "candles"))


def delta_log_files(table: Path) -> list[str]:
    import deltalake

    return list(deltalake.DeltaTable(str(table)).file_uris())


def delta_log_files_at(table: Path, version: int) -> list[str]:
    import deltalake

    return list(deltalake.DeltaTable(str(table), version=version).file_uris())


@needs_data
def test_days_two_and_three_alone_equal_the_same_days_inside_days_one_to_three(
    spark: SparkSession, tmp_path: Path
) -> None:
    durations = [60_000, 3_600_000]
    backfill(spark, [XBT], "2018-05-09", "2018-05-12", tmp_path / "days_1_3",
             pairs=["XBT/USD"], durations=durations)
    backfill(spark, [XBT], "2018-05-10", "2018-05-12", tmp_path / "days_2_3",
             pairs=["XBT/USD"], durations=durations)
    inside = only_days(indicators_of(tmp_path / "days_1_3"), "2018-05-10", "2018-05-12")
    alone = indicators_of(tmp_path / "days_2_3")
    assert alone.num_rows > 2_000
    assert_tables_equal(alone, inside, ["close", *INDICATOR_COLUMNS])
    assert not np.isnan(alone["macd"].to_numpy()).all()
    assert only_days(candles_of(tmp_path / "days_1_3"), "2018-05-10", "2018-05-12").equals(
        candles_of(tmp_path / "days_2_3"))


@needs_data
def test_warm_up_comes_from_the_candles_table_when_the_input_starts_at_the_range(
    spark: SparkSession, tmp_path: Path
) -> None:
    durations = [60_000]
    backfill(spark, [XBT], "2018-05-08", "2018-05-11", tmp_path / "full", pairs=["XBT/USD"],
             durations=durations)
    # An archive holding only days 2-3: the earlier candles must come from the table.
    from features.kraken_formats import read_trades_csv

    trades = read_trades_csv(str(XBT))
    start = int(pd.Timestamp("2018-05-09", tz="UTC").timestamp() * 1000)
    later = trades.filter(pc.greater_equal(trades["timestamp_ms"], start))
    import pyarrow.parquet as pq

    archive = tmp_path / "days_2_3.parquet"
    pq.write_table(later, archive)
    table = tmp_path / "split"
    backfill(spark, [XBT], "2018-05-08", "2018-05-09", table, pairs=["XBT/USD"],
             durations=durations)
    backfill(spark, [archive], "2018-05-09", "2018-05-11", table, pairs=["XBT/USD"],
             durations=durations)
    assert_tables_equal(indicators_of(table), indicators_of(tmp_path / "full"),
                        ["close", *INDICATOR_COLUMNS])


def test_bad_rows_are_counted_and_recorded_with_reasons_without_failing(
    spark: SparkSession, tmp_path: Path
) -> None:
    csv = tmp_path / "XBTUSD_kraken_bad_rows.csv"
    csv.write_text(
        "time,price,volume,buy_or_sell,market_or_limit,misc\n"
        "1525910400.1,9300.0,1.0,b,m,\n"
        "1525910401.2,-1,1.0,b,m,\n"
        "1525910402.3,0,1.0,s,l,\n"
        "1525910403.4,nan,1.0,s,l,\n"
        "1525910404.5,oops,1.0,s,l,\n"
        "1525910405.6,9301.0,2.0,s,l,\n"
        "1525910470.0,9302.0,0.5,b,l,\n"
    )
    clean = tmp_path / "XBTUSD_kraken_clean.csv"
    clean.write_text("time,price,volume,buy_or_sell,market_or_limit,misc\n"
                     "1525824000.5,9200.0,1.0,b,m,\n")
    first = backfill(spark, [clean], "2018-05-09", "2018-05-10", tmp_path / "out",
                     pairs=["XBT/USD"], durations=[60_000])
    assert first.rejected_in_range == 0 and first.table_versions["rejected_trades"] == 0
    summary = backfill(spark, [csv], "2018-05-10", "2018-05-11", tmp_path / "out",
                       pairs=["XBT/USD"], durations=[60_000])
    assert summary.trades_read == 7
    assert summary.trades_valid == 3
    assert summary.rejected_rows == summary.rejected_in_range == 4
    rejected = delta_log.read_table(str(tmp_path / "out" / "rejected_trades")).to_pandas()
    assert sorted(rejected["reason"]) == sorted([
        "price must be positive", "price must be positive", "price is not a finite number",
        "unparseable price: 'oops'",
    ])
    assert set(rejected["source"].str.rsplit("/", n=1).str[-1]) == {csv.name}
    assert rejected.loc[rejected["reason"].str.startswith("unparseable"), "row_number"].tolist() \
        == [6]
    candles = only_days(candles_of(tmp_path / "out"), "2018-05-10", "2018-05-11")
    assert candles["trade_count"].to_pylist() == [2, 1]
    assert summary.table_versions == {"candles": 1, "indicators": 1, "rejected_trades": 1}


@needs_data
def test_csv_through_either_reader_and_the_same_trades_as_json_lines_give_the_same_tables(
    spark: SparkSession, tmp_path: Path
) -> None:
    import json

    from features.kraken_formats import read_trades_csv

    lines = XBT.read_text().splitlines()
    day = [lines[0]] + [ln for ln in lines[1:]
                        if 1525910400 <= float(ln.split(",")[0]) < 1525996800]  # 2018-05-10
    csv = tmp_path / XBT.name
    csv.write_text("\n".join(day) + "\n")
    archive = tmp_path / "trades-2018-05-10.jsonl"
    archive.write_text("".join(json.dumps({"v": 1, **row}) + "\n"
                               for row in read_trades_csv(str(csv)).to_pylist()))
    outputs = {}
    for name, inputs, reader in (("python", [csv], "python"), ("hadoop", [csv], "hadoop"),
                                 ("jsonl", [archive], "auto")):
        backfill(spark, inputs, "2018-05-10", "2018-05-11", tmp_path / name, pairs=["XBT/USD"],
                 durations=[60_000, 3_600_000], file_reader=reader)
        outputs[name] = (candles_of(tmp_path / name), indicators_of(tmp_path / name))
    for name in ("hadoop", "jsonl"):
        assert outputs[name][0].equals(outputs["python"][0]), name
        assert_tables_equal(outputs[name][1], outputs["python"][1], ["close", *INDICATOR_COLUMNS])
    assert outputs["python"][0].num_rows > 1_000

"""Benchmark of the Spark trades backfill; prints its figures.

    .venv/bin/python bench/bench_backfill.py [--sizes 1000000 10000000] [--pairs 4]
        [--rate 50] [--durations 1m 1h] [--stream-size 1000000] [--no-stream]
    .venv/bin/python bench/bench_backfill.py --year      # + 8 pairs x 365 days, then 1M trades
    .venv/bin/python bench/bench_backfill.py --writers delta-spark delta-rs   # the default

1. **Backfill throughput** on `local[2]`, end to end: read Parquet trade files, validate, candles,
   indicators, three Delta commits (`batch.backfill.run_backfill`), for each size. Trades are
   generated with numpy at a fixed `--rate` (trades/s per pair, so the candle count grows with the
   trade count), split by time into `--files` Parquet files, and written under a temporary folder
   first (not timed). A small warm-up run (not timed) starts Spark's Python workers.
   Figures: seconds, trades/s, seconds per stage, and how time grows from the smallest to the
   largest size (1.0 = linear). Each size runs once per Delta writer in `--writers`
   (`batch.delta_store`: delta-spark, the offline store's writer, and delta-rs, the former
   Python data source + delta-rs commit), same inputs, same session, and prints the ratio.
2. **Stream replay** of the same history (the first `--stream-size` trades of the smallest size)
   through the speed layer (`streaming.pipelines.markets.run_trades_through_stream` against a
   local Apache Kafka broker started here), timed in the same run: the batch/stream speed
   ratio, per trade. See :func:`stream_replay_seconds` (the hook).
3. **Year scale** (`--year`): `--year-pairs` (8) pairs x `--year-days` (365) days of trades with
   every minute traded (about 40M trades; `bench/backfill_year.py`), candles 1m, 1h and 1d, all
   indicators, end to end on `local[2]` (target: under 3 minutes); then the `--sizes` runs
   (default 1M trades) for comparison. No stream replay.

Every backfill run prints its seconds per stage and its peak memory: the resident memory of
this process plus its descendants (the Spark JVM and the Python workers), sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402

from batch.backfill import BackfillConfig, run_backfill  # noqa: E402
from batch.spark_session import spark_session  # noqa: E402
from bench.backfill_year import PeakMemory, write_year_files  # noqa: E402
from features.schemas.trade import TRADE_ARROW_SCHEMA  # noqa: E402
from features.windows import parse_duration_ms  # noqa: E402

START_MS = 1_700_006_400_000  # 2023-11-15T00:00:00Z
PAIRS = ["XBT/USD", "ETH/USD", "SOL/USD", "XRP/USD", "ADA/USD", "DOT/USD", "LTC/USD", "XBT/EUR"]
BASE_PRICE = [60_000.0, 3_000.0, 150.0, 0.55, 0.45, 7.0, 80.0, 55_000.0]


def generate_trades(count: int, pairs: int, rate_per_pair: float, seed: int = 0) -> pa.Table:
    """`count` trades over `pairs` pairs in event-time order, `rate_per_pair` trades/s each."""
    rng = np.random.default_rng(seed)
    total_rate = rate_per_pair * pairs
    gaps_ms = rng.exponential(1000.0 / total_rate, count)
    ts = START_MS + np.floor(np.cumsum(gaps_ms)).astype(np.int64)
    codes = rng.integers(0, pairs, count)
    price = np.empty(count)
    trade_id = np.empty(count, dtype=np.int64)
    for code in range(pairs):
        mine = codes == code
        n = int(mine.sum())
        price[mine] = BASE_PRICE[code] * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
        trade_id[mine] = np.arange(1, n + 1)
    names = np.array(PAIRS[:pairs], dtype=object)
    return pa.table(
        {
            "pair": pa.array(names[codes], pa.string()),
            "price": pa.array(np.round(price, 6)),
            "volume": pa.array(rng.lognormal(-1.0, 1.0, count)),
            "side": pa.array(np.where(rng.random(count) < 0.5, "buy", "sell"), pa.string()),
            "order_type": pa.array(np.where(rng.random(count) < 0.4, "market", "limit"),
                                   pa.string()),
            "trade_id": pa.array(trade_id),
            "timestamp_ms": pa.array(ts),
        },
        schema=TRADE_ARROW_SCHEMA,
    )


def write_files(trades: pa.Table, folder: Path, files: int) -> list[str]:
    """Split by time (as daily or hourly archives are) into `files` Parquet files."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, trades.num_rows, files + 1).astype(int)
    paths = []
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        path = folder / f"trades-{i:04d}.parquet"
        pq.write_table(trades.slice(int(lo), int(hi - lo)), path, compression="zstd")
        paths.append(str(path))
    return paths


def day_range(trades: pa.Table) -> tuple[date, date]:
    ts = trades["timestamp_ms"].to_numpy()
    first = datetime.fromtimestamp(int(ts.min()) / 1000, UTC).date()
    last = datetime.fromtimestamp(int(ts.max()) / 1000, UTC).date()
    return first, last + timedelta(days=1)


def run_batch(spark: SparkSession, files: list[str], trades: pa.Table, pairs: list[str],
              durations: list[int], output: Path) -> dict[str, object]:
    start, end = day_range(trades)
    return run_range(spark, files, trades.num_rows, start, end, pairs, durations, output)


def run_range(spark: SparkSession, files: list[str], trade_count: int, start: date, end: date,
              pairs: list[str], durations: list[int], output: Path) -> dict[str, object]:
    t0 = time.perf_counter()
    with PeakMemory() as memory:
        summary = run_backfill(spark, BackfillConfig(
            inputs=files, start=start, end=end, pairs=pairs, output=str(output),
            durations_ms=durations, show_progress=False,
        ))
    seconds = time.perf_counter() - t0
    return {
        "trades": trade_count,
        "peak_mib": round(memory.peak_mib),
        "seconds": round(seconds, 2),
        "trades_per_s": round(trade_count / seconds),
        "candles": summary.candles_written,
        "indicator_rows": summary.indicator_rows_written,
        "stage_seconds": summary.stage_seconds,
        "table_versions": summary.table_versions,
    }


def stream_replay_seconds(trades: pa.Table, durations: list[int], grace_ms: int = 5_000) -> float:
    """The hook for the streaming comparison: seconds to push `trades` (row order = arrival)
    through the speed layer (produce, candle processor, indicator processor, until idle) on a
    local Apache Kafka broker. The broker's start and stop are not timed."""
    from infra import stack
    from infra.testing import broker_settings
    from streaming.pipelines.markets import run_trades_through_stream

    state = Path(tempfile.mkdtemp(prefix="braid-bench-stack-"))
    settings = broker_settings(state)
    stack.up(settings, create_topics=False)
    try:
        t0 = time.perf_counter()
        run_trades_through_stream(trades, settings.local_kafka_settings(), durations=durations,
                                  grace_ms=grace_ms, topic_prefix=f"bench{uuid.uuid4().hex[:6]}.")
        return time.perf_counter() - t0
    finally:
        stack.down(settings)
        shutil.rmtree(state, ignore_errors=True)


def duckdb_version() -> str:
    import duckdb

    return str(duckdb.__version__)


def write_seconds(result: dict[str, object]) -> float:
    """Seconds of a run's three write stages (where indicators are also computed: lazily)."""
    stages: dict[str, float] = result["stage_seconds"]  # type: ignore[assignment]
    return sum(stages.get(k, 0.0) for k in ("write candles", "write indicators",
                                            "write rejected"))


def duckdb_candles(paths: list[str], durations: list[int], threads: int = 2
                   ) -> tuple[float, pa.Table]:
    """The floor: DuckDB computing the same candles (OHLCV, VWAP, count per pair and window)
    from the same Parquet files, `threads` threads (local[2] has two cores); seconds and rows.
    Open and close are the first and last trade by (event time, trade id), as
    `features.candles.aggregate_trades` orders them; every generated trade is valid and, in
    event-time order, none is late, so no trade is dropped on either side."""
    import duckdb

    files = ", ".join(f"'{p}'" for p in paths)
    connection = duckdb.connect()
    connection.execute(f"SET threads = {threads}")
    started = time.perf_counter()
    connection.execute(f"CREATE TEMP VIEW trades AS SELECT * FROM read_parquet([{files}])")
    # one query per duration: DuckDB 1.5.5 hung on the UNION ALL of the three (2026-12-07)
    tables = [connection.execute(f"""
        SELECT pair, {size}::BIGINT AS window_ms,
               timestamp_ms - timestamp_ms % {size} AS window_start_ms,
               arg_min(price, (timestamp_ms, trade_id)) AS open, max(price) AS high,
               min(price) AS low, arg_max(price, (timestamp_ms, trade_id)) AS close,
               sum(volume) AS volume, sum(price * volume) / sum(volume) AS vwap,
               count(*) AS trade_count
        FROM trades GROUP BY pair, window_start_ms""").to_arrow_table() for size in durations]
    seconds = time.perf_counter() - started
    connection.close()
    return seconds, pa.concat_tables(tables)


def same_candles(braid: pa.Table, floor: pa.Table) -> str:
    """Braid's candle table against DuckDB's: the same rows, OHLC and counts exactly, volume and
    VWAP to 1e-9 relative (sums in another order)."""
    keys = [("pair", "ascending"), ("window_ms", "ascending"), ("window_start_ms", "ascending")]
    a = braid.select([f.name for f in floor.schema]).sort_by(keys)
    b = floor.cast(a.schema).sort_by(keys)
    if a.num_rows != b.num_rows:
        return f"NO: {a.num_rows:,} rows against {b.num_rows:,}"
    exact = all(a[c].equals(b[c]) for c in
                ("pair", "window_ms", "window_start_ms", "open", "high", "low", "close",
                 "trade_count"))
    worst = max(float(np.max(np.abs(a[c].to_numpy() - b[c].to_numpy())
                             / np.abs(b[c].to_numpy()))) for c in ("volume", "vwap"))
    verdict = "yes" if exact and worst <= 1e-9 else "NO"
    return (f"{verdict}: {a.num_rows:,} rows, keys/OHLC/counts identical: {exact}, largest "
            f"relative difference of volume and VWAP {worst:.1e}")


def run_year(spark: SparkSession, work: Path, pair_count: int, days: int,
             durations: list[int]) -> None:
    """The year-scale run (generation not timed); prints its figures."""
    pairs = PAIRS[:pair_count]
    t0 = time.perf_counter()
    year = write_year_files(work / "in-year", pairs, BASE_PRICE, days, START_MS)
    print(f"  year input: {len(pairs)} pairs x {days} days, every minute traded: "
          f"{year.trades:,} trades in {len(year.paths)} Parquet files "
          f"(generated in {time.perf_counter() - t0:.0f} s, not timed)")
    result = run_range(spark, year.paths, year.trades, year.start, year.end, pairs, durations,
                       work / "t-year")
    minutes = float(result["seconds"]) / 60  # type: ignore[arg-type]
    print(f"  year: {result['seconds']:>8.2f} s ({minutes:.2f} min; target < 60 s)  "
          f"{result['trades_per_s']:>10,} trades/s  candles {result['candles']:,}  "
          f"indicator rows {result['indicator_rows']:,}  peak memory {result['peak_mib']:,} MiB")
    print(f"        stages {json.dumps(result['stage_seconds'])}")
    floor_s, floor = duckdb_candles(year.paths, durations)
    from batch.delta_log import read_table

    same = same_candles(read_table(str(work / "t-year" / "candles")), floor)
    ratio = float(result["seconds"]) / floor_s  # type: ignore[arg-type]
    print(f"  floor: DuckDB {duckdb_version()}, 2 threads, the same candles from the same "
          f"Parquet files (compute only, no write): {floor_s:.2f} s, {floor.num_rows:,} "
          f"candles; Braid / DuckDB = {ratio:.1f}x; same candles as Braid's table: {same}",
          flush=True)
    shutil.rmtree(work / "in-year", ignore_errors=True)
    shutil.rmtree(work / "t-year", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--rate", type=float, default=50.0, help="trades/s per pair")
    parser.add_argument("--files", type=int, default=8, help="Parquet files per size")
    parser.add_argument("--durations", nargs="+", default=None,
                        help="candle durations (default 1m 1h; 1m 1h 1d with --year)")
    parser.add_argument("--writers", nargs="+", default=["delta-spark", "delta-rs"],
                        choices=["delta-spark", "delta-rs"],
                        help="Delta writers to measure on each size (ratio printed)")
    parser.add_argument("--stream-size", type=int, default=1_000_000)
    parser.add_argument("--no-stream", action="store_true", help="skip the stream replay")
    parser.add_argument("--workdir", default=None, help="where inputs and tables go (temp)")
    parser.add_argument("--year", action="store_true",
                        help="first a year of every-minute trades (see the docstring)")
    parser.add_argument("--year-days", type=int, default=365)
    parser.add_argument("--year-pairs", type=int, default=8)
    parser.add_argument("--driver-memory", default="4g",
                        help="heap of local Spark's one JVM (Spark's default 1g runs out of "
                             "memory at year scale)")
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_SUBMIT_ARGS",
                          f"--driver-memory {args.driver_memory} pyspark-shell")
    if args.year:
        args.no_stream = True
        if args.sizes == parser.get_default("sizes"):
            args.sizes = [1_000_000]
    if args.durations is None:
        args.durations = ["1m", "1h", "1d"] if args.year else ["1m", "1h"]

    from batch.logging_setup import configure_job_logging

    configure_job_logging("WARNING")
    durations = [parse_duration_ms(d) for d in args.durations]
    pairs = PAIRS[: args.pairs]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="braid-bench-backfill-"))
    spark = spark_session("braid-bench-backfill", master="local[2]", shuffle_partitions=4)
    print(f"backfill benchmark: local[2] (driver memory {args.driver_memory}), durations "
          f"{args.durations}; sized runs: {args.pairs} pairs at {args.rate:g} trades/s each, "
          f"{args.files} Parquet files per size; work dir {work}; "
          f"load average {os.getloadavg()[0]:.2f}")

    warm = generate_trades(50_000, args.pairs, args.rate, seed=99)
    run_batch(spark, write_files(warm, work / "warm", 2), warm, pairs, durations, work / "t-warm")

    if args.year:
        run_year(spark, work, args.year_pairs, args.year_days, durations)

    results = []
    for size in args.sizes:
        trades = generate_trades(size, args.pairs, args.rate, seed=size % 1000)
        files = write_files(trades, work / f"in-{size}", args.files)
        by_writer: dict[str, dict[str, object]] = {}
        for writer in args.writers:
            os.environ["BRAID_DELTA_WRITER"] = writer
            try:
                result = run_batch(spark, files, trades, pairs, durations,
                                   work / f"t-{size}-{writer}")
            finally:
                os.environ.pop("BRAID_DELTA_WRITER", None)
            by_writer[writer] = result
            print(f"  {size:>11,} trades [{writer:>11}]: {result['seconds']:>7.2f} s  "
                  f"{result['trades_per_s']:>10,} trades/s  candles {result['candles']:,}  "
                  f"peak memory {result['peak_mib']:,} MiB  "
                  f"stages {json.dumps(result['stage_seconds'])}")
            shutil.rmtree(work / f"t-{size}-{writer}", ignore_errors=True)
        results.append(by_writer[args.writers[0]])
        if {"delta-spark", "delta-rs"} <= set(by_writer):
            spark_s = float(by_writer["delta-spark"]["seconds"])  # type: ignore[arg-type]
            rs_s = float(by_writer["delta-rs"]["seconds"])  # type: ignore[arg-type]
            print(f"  {size:>11,} trades: delta-spark / delta-rs = {spark_s / rs_s:.2f} end to "
                  f"end; write stages {write_seconds(by_writer['delta-spark']):.2f} s / "
                  f"{write_seconds(by_writer['delta-rs']):.2f} s")
        del trades
    if len(results) > 1:
        small, large = results[0], results[-1]
        size_ratio = int(large["trades"]) / int(small["trades"])  # type: ignore[call-overload]
        time_ratio = float(large["seconds"]) / float(small["seconds"])  # type: ignore[arg-type]
        print(f"  time grows x{time_ratio:.2f} for x{size_ratio:.0f} trades "
              f"(scaling exponent {np.log(time_ratio) / np.log(size_ratio):.2f}; 1.00 = linear)")
    if not args.no_stream:
        stream_trades = generate_trades(args.stream_size, args.pairs, args.rate,
                                        seed=args.sizes[0] % 1000).slice(0, args.stream_size)
        files = write_files(stream_trades, work / "in-stream", args.files)
        batch = run_batch(spark, files, stream_trades, pairs, durations, work / "t-stream")
        seconds = stream_replay_seconds(stream_trades, durations)
        print(f"  stream replay of the same {args.stream_size:,} trades: {seconds:.2f} s "
              f"({args.stream_size / seconds:,.0f} trades/s); batch {batch['seconds']} s "
              f"-> batch is {seconds / float(batch['seconds']):.1f}x faster")  # type: ignore[arg-type]
    shutil.rmtree(work, ignore_errors=True)
    spark.stop()


if __name__ == "__main__":
    main()

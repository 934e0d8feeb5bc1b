"""Parquet footers give each input file's event-time span (batch.parquet_spans), and the exact
pass built from those spans gives every candle bit for bit as the exact pass built from the
spans the files' valid trades report. No Spark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from batch.arrival_order import ArrivalOrder
from batch.candles_job import candles_of_shared_windows
from batch.file_results import (
    CANDLE,
    TRADE,
    FileContext,
    file_contexts,
    file_results,
)
from batch.parquet_spans import footer_contexts, footer_span
from batch.trade_files import parse_trade_file
from features.schemas.candle import CANDLE_ARROW_SCHEMA
from features.schemas.trade import TRADE_ARROW_SCHEMA
from features.windows import NO_STREAM_TIME

PAIRS = ["XBT/USD", "ETH/USD"]
DURATIONS = [60_000, 3_600_000]
START = 1_700_000_000_000


def trades(n: int, seed: int, first_ms: int = START, gap_ms: int = 3_000) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = first_ms + np.cumsum(rng.integers(0, gap_ms, n))
    return pa.table({
        "pair": pa.array(np.where(rng.random(n) < 0.6, *PAIRS), pa.string()),
        "price": pa.array(np.round(200 + rng.normal(0, 1, n).cumsum(), 2)),
        "volume": pa.array(rng.lognormal(0, 1, n)),
        "side": pa.array(np.full(n, "buy"), pa.string()),
        "order_type": pa.array(np.full(n, "limit"), pa.string()),
        "trade_id": pa.array(np.arange(n, dtype=np.int64) + seed * 1_000_000),
        "timestamp_ms": pa.array(ts),
    }, schema=TRADE_ARROW_SCHEMA)


def write(table: pa.Table, path: Path, **options: object) -> str:
    pq.write_table(table, path, **options)
    return str(path)


def test_the_footer_span_is_the_min_and_max_over_every_row_group(tmp_path: Path) -> None:
    table = trades(5_000, 1)
    path = write(table, tmp_path / "t.parquet", row_group_size=700)
    assert pq.ParquetFile(path).metadata.num_row_groups > 1
    ts = table["timestamp_ms"].to_numpy()
    assert footer_span(path) == (int(ts.min()), int(ts.max()))


def test_a_footer_that_cannot_tell_gives_none_and_a_file_without_timestamps_true(
        tmp_path: Path) -> None:
    table = trades(100, 2)
    assert footer_span(write(table, tmp_path / "nostats.parquet", write_statistics=False)) is None
    as_time = table.set_column(6, "timestamp_ms", table["timestamp_ms"].cast(pa.timestamp("ms")))
    assert footer_span(write(as_time, tmp_path / "typed.parquet")) is None
    csv = tmp_path / "XBTUSD.csv"
    csv.write_text("1700000000,200.0,1.0\n")
    assert footer_span(str(csv)) is None
    assert footer_span(str(tmp_path / "missing.parquet")) is None
    nulls = table.set_column(6, "timestamp_ms", pa.nulls(100, pa.int64()))
    assert footer_span(write(nulls, tmp_path / "nulls.parquet")) is True
    assert footer_contexts([write(table, tmp_path / "a.parquet"), str(csv)], PAIRS,
                           DURATIONS) is None


def test_other_spans_hold_only_the_files_within_the_longest_duration(tmp_path: Path) -> None:
    hour = 3_600_000
    paths = [write(trades(50, i, first_ms=START + i * 10 * hour, gap_ms=1_000),
                   tmp_path / f"{i}.parquet") for i in range(3)]
    near = write(trades(50, 9, first_ms=START + 20 * hour + 30_000, gap_ms=1_000),
                 tmp_path / "near.parquet")
    contexts = footer_contexts([*paths, near], PAIRS, DURATIONS)
    assert contexts is not None
    assert set(contexts) == {(i, p) for i in range(4) for p in PAIRS}
    assert contexts[(0, "ETH/USD")].other_spans == ()
    assert contexts[(2, "XBT/USD")].other_spans == (footer_span(near),)
    assert {c.stream_time_before for c in contexts.values()} == {NO_STREAM_TIME}
    assert contexts[(3, "XBT/USD")].other_spans == (footer_span(paths[2]),)


def candles(paths: list[str], contexts: dict[tuple[int, str], FileContext]) -> pa.Table:
    results = pa.concat_tables([
        file_results(Path(p).read_bytes(), p, i, pairs=PAIRS, durations_ms=DURATIONS,
                     grace_ms=5_000, arrival=ArrivalOrder.EVENT_TIME, contexts=contexts)
        for i, p in enumerate(paths)
    ])
    pieces = [results.filter(pc.equal(results["kind"], CANDLE))
              .select(CANDLE_ARROW_SCHEMA.names).cast(CANDLE_ARROW_SCHEMA)]
    shared = results.filter(pc.equal(results["kind"], TRADE))
    for key in shared.select(["pair", "window_ms"]).group_by(["pair", "window_ms"]).aggregate(
            []).to_pylist():
        pieces.append(candles_of_shared_windows(shared.filter(pc.and_(
            pc.equal(shared["pair"], key["pair"]), pc.equal(shared["window_ms"], key["window_ms"])
        ))))
    return pa.concat_tables(pieces).sort_by(
        [("pair", "ascending"), ("window_ms", "ascending"), ("window_start_ms", "ascending")])


@pytest.mark.parametrize("layout", ["following", "overlapping", "bad rows"])
def test_the_exact_pass_from_footer_spans_gives_the_same_candles_bit_for_bit(
        tmp_path: Path, layout: str) -> None:
    whole = trades(6_000, 3)
    if layout == "overlapping":  # the middle file's trades interleave with its neighbours'
        order = np.argsort(np.r_[np.arange(2_000), np.arange(2_000) + 1_500.5,
                                 np.arange(2_000) + 3_000.25], kind="stable")
        whole = whole.take(pa.array(order))
    parts = [whole.slice(0, 2_000), whole.slice(2_000, 2_000), whole.slice(4_000)]
    if layout == "bad rows":  # rejected rows whose timestamps reach far into other files
        bad = parts[1].slice(0, 2).to_pylist()
        bad[0].update(volume=-1.0, timestamp_ms=START)
        bad[1].update(price=float("nan"), timestamp_ms=START + 10**9)
        parts[1] = pa.concat_tables([parts[1], pa.Table.from_pylist(bad, TRADE_ARROW_SCHEMA)])
    paths = [write(part, tmp_path / f"{i}.parquet") for i, part in enumerate(parts)]
    from_footers = footer_contexts(paths, PAIRS, DURATIONS)
    assert from_footers is not None
    reported = []  # what the exact second pass uses: spans of each file's valid trades
    for index, path in enumerate(paths):
        parsed = parse_trade_file(Path(path).read_bytes(), path, index)
        valid = parsed.filter(pc.is_null(parsed["reject_reason"]))
        for row in valid.group_by("pair").aggregate(
                [("timestamp_ms", "min"), ("timestamp_ms", "max")]).to_pylist():
            reported.append((index, row["pair"], row["timestamp_ms_min"],
                             row["timestamp_ms_max"]))
    want = candles(paths, file_contexts(reported, ArrivalOrder.EVENT_TIME))
    got = candles(paths, from_footers)
    assert got.num_rows == want.num_rows > 0
    assert got.equals(want)

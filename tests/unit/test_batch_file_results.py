"""Per-file aggregation (batch.file_results + batch.candles_job) equals one aggregation over all
trades, with the stream's lateness rule, however the trades are split into files. No Spark."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from batch.arrival_order import ArrivalOrder
from batch.candles_job import candles_of_pair, candles_of_shared_windows
from batch.file_results import (
    CANDLE,
    COUNT,
    FILE_RESULT_SCHEMA,
    SPAN,
    TRADE,
    FileContext,
    file_contexts,
    file_results,
    optimistic_pass_is_exact,
)
from batch.trade_files import parse_trade_file
from features.schemas.candle import CANDLE_ARROW_SCHEMA
from features.schemas.trade import TRADE_ARROW_SCHEMA
from features.windows import NO_STREAM_TIME

DURATIONS = [60_000, 300_000]
GRACE = 5_000


def generated_trades(n: int, seed: int) -> pa.Table:
    """Two pairs, in arrival order, with out-of-order trades and some far too late."""
    rng = np.random.default_rng(seed)
    event = 1_700_000_000_000 + np.cumsum(rng.integers(0, 2_000, n))
    arrival = event.copy()
    jitter = rng.random(n) < 0.2
    arrival[jitter] += rng.integers(0, 4_000, jitter.sum())
    late = rng.random(n) < 0.03
    arrival[late] += rng.integers(70_000, 400_000, late.sum())
    order = np.argsort(arrival, kind="stable")
    pair = np.where(rng.random(n) < 0.6, "XBT/USD", "ETH/USD")[order]
    return pa.table(
        {
            "pair": pa.array(pair, pa.string()),
            "price": pa.array(np.round(100 + rng.normal(0, 1, n).cumsum(), 2)[order] + 200),
            "volume": pa.array(rng.lognormal(0, 1, n)[order]),
            "side": pa.array(np.full(n, "buy"), pa.string()),
            "order_type": pa.array(np.full(n, "limit"), pa.string()),
            "trade_id": pa.array(np.arange(n, dtype=np.int64)[order]),
            "timestamp_ms": pa.array(event[order]),
        },
        schema=TRADE_ARROW_SCHEMA,
    )


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def batch_candles(files: list[pa.Table], arrival: ArrivalOrder) -> pa.Table:
    """What the Spark job computes in its exact (two-pass) mode, without Spark."""
    contents = [parquet_bytes(f) for f in files]
    spans = []
    for index, content in enumerate(contents):
        parsed = parse_trade_file(content, f"f{index}.parquet", index)
        for row in parsed.group_by("pair").aggregate(
            [("timestamp_ms", "min"), ("timestamp_ms", "max")]
        ).to_pylist():
            spans.append((index, row["pair"], row["timestamp_ms_min"], row["timestamp_ms_max"]))
    contexts = file_contexts(spans, arrival)
    return candles_from_results(run_files(contents, arrival, contexts))


def run_files(contents: list[bytes], arrival: ArrivalOrder,
              contexts: dict[tuple[int, str], FileContext] | None) -> pa.Table:
    results = pa.concat_tables([
        file_results(c, f"f{i}.parquet", i, pairs=["XBT/USD", "ETH/USD"], durations_ms=DURATIONS,
                     grace_ms=GRACE, arrival=arrival, contexts=contexts)
        for i, c in enumerate(contents)
    ])
    assert results.schema == FILE_RESULT_SCHEMA
    return results


def optimistic_candles(files: list[pa.Table], arrival: ArrivalOrder) -> tuple[pa.Table, bool]:
    """The one-pass mode: candles, and whether the spans say they are exact."""
    results = run_files([parquet_bytes(f) for f in files], arrival, None)
    spans = results.filter(pc.equal(results["kind"], SPAN)).select(
        ["source_index", "pair", "span_min_ms", "span_max_ms", "span_first_ms"]).to_pylist()
    exact = optimistic_pass_is_exact([tuple(r.values()) for r in spans], DURATIONS, arrival)
    return candles_from_results(results), exact


def candles_from_results(results: pa.Table) -> pa.Table:
    own = results.filter(pc.equal(results["kind"], CANDLE)).select(CANDLE_ARROW_SCHEMA.names)
    shared = results.filter(pc.equal(results["kind"], TRADE))
    pieces = [own.cast(CANDLE_ARROW_SCHEMA)]
    for key in shared.select(["pair", "window_ms"]).group_by(["pair", "window_ms"]).aggregate(
        []
    ).to_pylist():
        mask = pc.and_(pc.equal(shared["pair"], key["pair"]),
                       pc.equal(shared["window_ms"], key["window_ms"]))
        pieces.append(candles_of_shared_windows(shared.filter(mask)))
    return sort_candles(pa.concat_tables(pieces))


def reference_candles(trades: pa.Table, arrival: ArrivalOrder) -> pa.Table:
    """One call of the shared definition per pair over all trades in arrival order."""
    n = trades.num_rows
    indexed = trades.append_column("source_index", pa.array(np.zeros(n, np.int32))).append_column(
        "row_index", pa.array(np.arange(n, dtype=np.int64))
    )
    pieces = [
        candles_of_pair(indexed.filter(pc.equal(indexed["pair"], pair)), DURATIONS, GRACE,
                        arrival)
        for pair in ("XBT/USD", "ETH/USD")
    ]
    return sort_candles(pa.concat_tables(pieces))


def sort_candles(table: pa.Table) -> pa.Table:
    return table.sort_by([("pair", "ascending"), ("window_ms", "ascending"),
                          ("window_start_ms", "ascending")])


def assert_same_candles(got: pa.Table, want: pa.Table) -> None:
    assert got.num_rows == want.num_rows
    for name in ("pair", "window_ms", "window_start_ms", "window_end_ms", "trade_count"):
        assert got[name].to_pylist() == want[name].to_pylist(), name
    for name in ("open", "high", "low", "close", "volume", "vwap"):
        np.testing.assert_allclose(got[name].to_numpy(), want[name].to_numpy(), rtol=0,
                                   atol=1e-9, err_msg=name)


@pytest.mark.parametrize("cuts", [[], [700], [250, 900, 1500]])
def test_files_in_arrival_order_give_the_candles_of_one_pass_with_the_same_late_trades(
    cuts: list[int],
) -> None:
    trades = generated_trades(2_000, seed=len(cuts))
    bounds = [0, *cuts, trades.num_rows]
    files = [trades.slice(a, b - a) for a, b in itertools.pairwise(bounds)]
    want = reference_candles(trades, ArrivalOrder.FILE)
    assert int(pc.sum(want["trade_count"]).as_py()) < len(DURATIONS) * trades.num_rows  # late
    assert_same_candles(batch_candles(files, ArrivalOrder.FILE), want)


def test_files_merged_by_event_time_drop_no_trade_and_match_one_pass() -> None:
    trades = generated_trades(1_500, seed=7)
    files = [trades.slice(0, 600), trades.slice(600)]
    got = batch_candles(files, ArrivalOrder.EVENT_TIME)
    assert_same_candles(got, reference_candles(trades, ArrivalOrder.EVENT_TIME))
    for duration in DURATIONS:
        counts = got.filter(pc.equal(got["window_ms"], duration))["trade_count"]
        assert pc.sum(counts).as_py() == trades.num_rows


def test_file_contexts_carry_the_stream_time_of_earlier_files_only_in_file_order() -> None:
    spans = [(0, "XBT/USD", 10, 50), (1, "XBT/USD", 40, 90), (1, "ETH/USD", 5, 6),
             (2, "XBT/USD", 30, 60)]
    by_file = file_contexts(spans, ArrivalOrder.FILE)
    assert by_file[(0, "XBT/USD")].stream_time_before == NO_STREAM_TIME
    assert by_file[(1, "XBT/USD")].stream_time_before == 50
    assert by_file[(2, "XBT/USD")].stream_time_before == 90
    assert by_file[(1, "ETH/USD")].stream_time_before == NO_STREAM_TIME
    assert by_file[(1, "XBT/USD")].other_spans == ((10, 50), (30, 60))
    merged = file_contexts(spans, ArrivalOrder.EVENT_TIME)
    assert all(c.stream_time_before == NO_STREAM_TIME for c in merged.values())


def test_counts_cover_valid_and_rejected_rows_per_pair() -> None:
    trades = generated_trades(300, seed=3).to_pylist()
    trades[5]["price"] = 0.0
    content = parquet_bytes(pa.Table.from_pylist(trades, schema=TRADE_ARROW_SCHEMA))
    results = file_results(content, "x.parquet", 0, pairs=["XBT/USD", "ETH/USD"],
                           durations_ms=DURATIONS, grace_ms=GRACE,
                           arrival=ArrivalOrder.FILE, contexts={})
    counts = results.filter(pc.equal(results["kind"], COUNT))
    assert pc.sum(counts["rows_valid"]).as_py() == 299
    assert pc.sum(counts["rows_rejected"]).as_py() == 1


def test_one_pass_over_files_that_follow_each_other_in_time_is_exact_and_says_so() -> None:
    trades = generated_trades(3_000, seed=5)
    order = np.argsort(trades["timestamp_ms"].to_numpy(), kind="stable")
    in_time = trades.take(pa.array(order))  # archives split by time, no disorder
    files = [in_time.slice(0, 1_000), in_time.slice(1_000, 1_200), in_time.slice(2_200)]
    for arrival in ArrivalOrder:
        got, exact = optimistic_candles(files, arrival)
        assert exact, arrival
        assert_same_candles(got, reference_candles(in_time, arrival))


def test_one_pass_over_interleaved_or_late_files_is_flagged_for_the_exact_pass() -> None:
    trades = generated_trades(2_000, seed=6)
    interleaved = [trades.filter(pa.array(np.arange(2_000) % 2 == k)) for k in (0, 1)]
    assert not optimistic_candles(interleaved, ArrivalOrder.EVENT_TIME)[1]
    split = [trades.slice(0, 1_000), trades.slice(1_000)]
    got, exact = optimistic_candles(split, ArrivalOrder.FILE)
    if exact:
        assert_same_candles(got, reference_candles(trades, ArrivalOrder.FILE))


def test_spans_decide_when_one_pass_is_exact() -> None:
    minute = [60_000]
    # two files one after the other, meeting inside one window: fine
    assert optimistic_pass_is_exact(
        [(0, "P", 0, 90_000, 0), (1, "P", 100_000, 300_000, 100_000)], minute, ArrivalOrder.FILE)
    # the second file reaches into the first file's middle windows
    assert not optimistic_pass_is_exact(
        [(0, "P", 0, 300_000, 0), (1, "P", 100_000, 400_000, 100_000)], minute,
        ArrivalOrder.EVENT_TIME)
    # in file order, the second file's first trade is older than the first file's newest
    late_start = [(0, "P", 0, 90_000, 0), (1, "P", 95_000, 300_000, 95_000),
                  (2, "P", 80_000, 100_000, 80_000)]
    assert not optimistic_pass_is_exact(late_start, minute, ArrivalOrder.FILE)
    # other pairs do not interfere
    assert optimistic_pass_is_exact(
        [(0, "P", 0, 300_000, 0), (1, "Q", 100_000, 400_000, 100_000)], minute,
        ArrivalOrder.FILE)

"""Per input file, in one Spark task: parse, validate, apply lateness, aggregate candles.

Trades stay in the Python worker that parsed them whenever possible. For each duration, a window
whose trades can only come from this file (no other input file has trades of the same pair in
the window's time span) becomes a final candle right here, through
`features.candles.aggregate_trades` over all its trades. Trades of a window that other files
may share are emitted as rows, and Spark aggregates them per window after a shuffle
(`batch.candles_job`). Either way, each candle is `aggregate_trades` over all the window's
non-late trades, exactly as the stream computes it. The file also yields its rejected rows and
per-pair counts.

Lateness (`features.windows.lateness`) needs each pair's stream time before the file. In
`EVENT_TIME` arrival order (files merged by event time) no trade is ever late. In `FILE` order
a file's initial stream time for a pair is the largest event time of the pair in earlier files,
and window closure records (`features.schemas.window_closure`, in archives of the `trades` topic
and in the topic itself) close windows as in the stream: a trade after a closure record of its
pair, whose window the record closes, is late (a closure record in an earlier file closes them
for the whole file). In `EVENT_TIME` order closure records have no place and are ignored.
The first pass assumes files follow each other in time (`contexts=None`); every file reports its
spans, and when :func:`optimistic_pass_is_exact` says the assumption fails, the driver builds one
:class:`FileContext` per file and pair from those spans for an exact second pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch.arrival_order import ArrivalOrder, arrival_permutation
from batch.trade_files import parse_trade_file
from features.candles import aggregate_trades, finalize, key_time_order
from features.schemas.candle import CANDLE_ARROW_SCHEMA
from features.windows import (
    NO_STREAM_TIME,
    Closures,
    TumblingWindow,
    closed_until_at,
    lateness,
)

CANDLE = "candle"
TRADE = "trade"
REJECTED = "rejected"
COUNT = "count"
SPAN = "span"
LATE = "late"
CLOSURE = "closure"  # a closure record of the file: pair, window_ms (0: all), timestamp_ms

FILE_RESULT_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string()),
        # candles (CANDLE_ARROW_SCHEMA's columns, nullable here)
        *(f.with_nullable(True) for f in CANDLE_ARROW_SCHEMA),
        # trades of shared windows: one row per (pair, duration) of a file, the trades as an
        # Arrow IPC stream (SHARED_TRADE_SCHEMA), so millions of trades cross the shuffle as a
        # few binary values instead of millions of rows
        pa.field("source_index", pa.int32()),
        pa.field("shared_trades", pa.binary()),
        pa.field("timestamp_ms", pa.int64()),  # rejected rows (null: unknown); closures' through
        # rejected rows
        pa.field("source", pa.string()),
        pa.field("row_number", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("raw", pa.string()),
        # counts
        pa.field("rows_valid", pa.int64()),
        pa.field("rows_rejected", pa.int64()),
        pa.field("rows_late", pa.int64()),  # kind `late`: per pair and window_ms
        # spans, per pair: event-time min and max, and the first-arrived trade's event time
        pa.field("span_min_ms", pa.int64()),
        pa.field("span_max_ms", pa.int64()),
        pa.field("span_first_ms", pa.int64()),
    ]
)


@dataclass(frozen=True)
class FileContext:
    """What one file needs to know about the other files, for one pair."""

    stream_time_before: int  # NO_STREAM_TIME in event-time order or for the first file
    other_spans: tuple[tuple[int, int], ...]  # (min, max) event time of the pair in other files
    # (window_ms or 0 for every duration, through_ms) of the pair's closure records in earlier
    # files (file order only)
    closed_before: tuple[tuple[int, int], ...] = ()

    def closed_until(self, window: TumblingWindow) -> int:
        """End of the pair's last `window`-sized window closed by earlier files' closures."""
        ends = [window.start_of(np.array([t]))[0] + window.size_ms
                for w, t in self.closed_before if w in (0, window.size_ms)]
        return int(max(ends, default=NO_STREAM_TIME))


Contexts = Mapping[tuple[int, str], FileContext]


def file_contexts(
    spans: Sequence[tuple[int, str, int, int]], arrival: ArrivalOrder,
    closures: Sequence[tuple[int, str, int, int]] = (),
) -> dict[tuple[int, str], FileContext]:
    """From (source_index, pair, min, max event time) per file, and (source_index, pair,
    window_ms, through_ms) per closure record: each file's context per pair.

    Files arrive in `source_index` order (in `FILE` order; in event-time order nothing is late).
    """
    by_pair: dict[str, list[tuple[int, int, int]]] = {}
    for index, pair, low, high in spans:
        by_pair.setdefault(pair, []).append((index, int(low), int(high)))
    out: dict[tuple[int, str], FileContext] = {}
    for pair, files in by_pair.items():
        files.sort()
        running = NO_STREAM_TIME
        for index, _low, high in files:
            before = running if arrival is ArrivalOrder.FILE else NO_STREAM_TIME
            others = tuple((lo, hi) for i, lo, hi in files if i != index)
            closed = tuple(sorted((int(w), int(t)) for i, p, w, t in closures
                                  if p == pair and i < index)) if (
                arrival is ArrivalOrder.FILE) else ()
            out[(index, pair)] = FileContext(before, others, closed)
            running = max(running, high)
    return out


def closures_reach_later_files(
    spans: Sequence[tuple[int, str, int, int, int]],
    closures: Sequence[tuple[int, str, int, int]], arrival: ArrivalOrder,
) -> bool:
    """Whether a closure record of one file may close windows of a later file's trades (its
    pair has trades in a later file, in `FILE` order): then only the exact pass, which hands
    each file the closures before it, is right."""
    if arrival is not ArrivalOrder.FILE:
        return False
    files_of: dict[str, set[int]] = {}
    for index, pair, *_ in spans:
        files_of.setdefault(pair, set()).add(int(index))
    return any(any(other > index for other in files_of.get(pair, ()))
               for index, pair, _, _ in closures)


def file_results(
    content: bytes,
    path: str,
    source_index: int,
    *,
    pairs: Sequence[str],
    durations_ms: Sequence[int],
    grace_ms: int,
    arrival: ArrivalOrder,
    contexts: Contexts | None,
    parse: Callable[[bytes, str, int], pa.Table] = parse_trade_file,
) -> pa.Table:
    """One file's candles, shared-window trades, rejected rows, counts and spans
    (`FILE_RESULT_SCHEMA`).

    With `contexts` (from a first pass), windows overlapping another file's span are shared and
    lateness starts from the stream time before the file: exact for any files. With `None`
    (optimistic, one pass), the windows of each pair's first and last trade are shared and
    lateness starts afresh: exact when :func:`optimistic_pass_is_exact` says so for the spans
    all files reported (files that follow each other in time, the usual case).
    """
    parsed = parse(content, path, source_index)
    pair_set = pa.array(list(pairs), pa.string())
    if parsed["closure_rule"].null_count == parsed.num_rows:  # no closure record (Parquet, CSV)
        closures = parsed.slice(0, 0)
    else:
        is_closure = pc.is_valid(parsed["closure_rule"])
        closures = parsed.filter(pc.and_(pc.is_in(parsed["pair"], pair_set), is_closure))
        parsed = parsed.filter(pc.invert(is_closure))
    wanted = pc.is_in(parsed["pair"], pair_set)
    rejected_mask = pc.is_valid(parsed["reject_reason"])
    keep_rejected = pc.and_(rejected_mask, pc.or_(wanted, pc.equal(parsed["pair"], "")))
    trades = _where(parsed, pc.and_(wanted, pc.invert(rejected_mask)))
    rejected = _where(parsed, keep_rejected)
    pieces = [
        *_candles_and_shared_trades(trades, source_index, durations_ms, grace_ms, arrival,
                                    contexts, closures),
        _rejected(rejected),
        _counts(trades, rejected),
        _closure_facts(closures, source_index),
    ]
    return pa.concat_tables([_conform(p) for p in pieces])


def _where(table: pa.Table, mask: pa.ChunkedArray | pa.Array) -> pa.Table:
    """`table.filter(mask)` (a mask without nulls), without copying the columns when it keeps
    every row or none: the usual case of a file of valid trades of the wanted pairs."""
    kept = pc.sum(mask).as_py() or 0
    if kept == table.num_rows:
        return table
    if kept == 0:
        return table.slice(0, 0)
    return table.filter(mask)


def _closure_facts(closures: pa.Table, source_index: int) -> pa.Table:
    n = closures.num_rows
    return pa.table({
        "kind": pa.array([CLOSURE] * n, pa.string()),
        "pair": closures["pair"],
        "source_index": pa.array(np.full(n, source_index, dtype=np.int32)),
        "window_ms": closures["closure_window_ms"],
        "timestamp_ms": closures["timestamp_ms"],
    })


def _candles_and_shared_trades(
    trades: pa.Table,
    source_index: int,
    durations_ms: Sequence[int],
    grace_ms: int,
    arrival: ArrivalOrder,
    contexts: Contexts | None,
    closure_rows: pa.Table | None = None,
) -> list[pa.Table]:
    if trades.num_rows == 0:
        return []
    order = arrival_permutation(
        arrival, trades["source_index"].to_numpy(), trades["row_index"].to_numpy(),
        trades["timestamp_ms"].to_numpy(),
    )
    in_order = bool(np.all(order[1:] > order[:-1]))  # files are usually already in order

    def column(name: str) -> np.ndarray:
        values = trades[name].to_numpy()
        return values if in_order else values[order]

    encoded = pc.dictionary_encode(trades["pair"]).combine_chunks()
    codes = column_of(encoded.indices.to_numpy().astype(np.int64), order, in_order)
    names: list[str] = encoded.dictionary.to_pylist()
    context = [(contexts or {}).get((source_index, n), FileContext(NO_STREAM_TIME, ()))
               for n in names]
    initial = np.array([c.stream_time_before for c in context], dtype=np.int64)
    ts = column("timestamp_ms")
    tid = column("trade_id")
    price = column("price")
    volume = column("volume")
    row_index = column("row_index")
    closures = _file_closures(closure_rows, names)
    pieces: list[pa.Table] = [_spans(names, codes, ts, source_index)]
    # aggregate_trades' order (pair, time, trade id; ties in arrival order), sorted once for
    # every duration: a window's start grows with its trades' time
    by_key = key_time_order(codes, ts, tid)
    in_key_order = [values[by_key] for values in (codes, ts, tid, price, volume)]
    for size_ms in durations_ms:
        window = TumblingWindow(size_ms, grace_ms)
        if arrival is ArrivalOrder.EVENT_TIME:
            on_time = np.ones(len(ts), dtype=bool)
        else:
            closed_before = np.array([c.closed_until(window) for c in context], dtype=np.int64)
            closed_at, _ = closed_until_at(window, codes, row_index, ts, closed_before, closures)
            on_time = lateness(window, codes, ts, initial, closed_at) == 0
        late_per_pair = np.bincount(codes[~on_time], minlength=len(names))
        pieces.append(pa.table({
            "kind": pa.array([LATE] * len(names), pa.string()),
            "pair": pa.array(names, pa.string()),
            "window_ms": pa.array(np.full(len(names), size_ms, dtype=np.int64)),
            "rows_late": pa.array(late_per_pair.astype(np.int64)),
        }))
        shared = on_time & (
            _in_boundary_window(window, codes, ts) if contexts is None
            else _in_shared_window(window, codes, ts, context)
        )
        own = (on_time & ~shared)[by_key]
        mine = in_key_order if bool(own.all()) else [v[own] for v in in_key_order]
        candles = finalize(aggregate_trades(window, *mine, presorted=True))
        pieces.append(_candle_rows(names, size_ms, candles))
        blobs, blob_pairs = [], []
        for code in np.unique(codes[shared]):
            mine = shared & (codes == code)
            blobs.append(encode_trades(pa.table({
                "source_index": pa.array(np.full(int(mine.sum()), source_index, np.int32)),
                "row_index": pa.array(row_index[mine]),
                "timestamp_ms": pa.array(ts[mine]),
                "trade_id": pa.array(tid[mine]),
                "price": pa.array(price[mine]),
                "volume": pa.array(volume[mine]),
            }, schema=SHARED_TRADE_SCHEMA)))
            blob_pairs.append(names[int(code)])
        if blobs:
            pieces.append(pa.table({
                "kind": pa.array([TRADE] * len(blobs), pa.string()),
                "pair": pa.array(blob_pairs, pa.string()),
                "window_ms": pa.array(np.full(len(blobs), size_ms, dtype=np.int64)),
                "source_index": pa.array(np.full(len(blobs), source_index, dtype=np.int32)),
                "shared_trades": pa.array(blobs, pa.binary()),
            }))
    return pieces


def _file_closures(rows: pa.Table | None, names: list[str]) -> Closures:
    """The file's closure records of pairs that have trades in it, as `Closures` over the
    trades' positions (`row_index`): a record closes windows for the rows at its `row_index`
    and after, i.e. after position `row_index - 1`."""
    if rows is None or rows.num_rows == 0:
        return Closures.empty()
    code_of = {name: i for i, name in enumerate(names)}
    pairs = rows["pair"].to_pylist()
    keep = np.array([p in code_of for p in pairs], dtype=bool)
    return Closures(
        np.array([code_of[p] for p in pairs if p in code_of], dtype=np.int64),
        rows["row_index"].to_numpy()[keep].astype(np.int64) - 1,
        rows["closure_window_ms"].to_numpy()[keep].astype(np.int64),
        rows["timestamp_ms"].to_numpy()[keep].astype(np.int64))


def column_of(values: np.ndarray, order: np.ndarray, in_order: bool) -> np.ndarray:
    return values if in_order else values[order]


def _in_boundary_window(window: TumblingWindow, codes: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """True for trades in the window of their pair's first or last trade (by event time); a few
    vectorized passes whatever the number of pairs (`codes` are small non-negative ints)."""
    starts = window.start_of(ts)
    pairs = int(codes.max()) + 1
    first = np.full(pairs, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(pairs, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, codes, starts)
    np.maximum.at(last, codes, starts)
    return (starts == first[codes]) | (starts == last[codes])


def _spans(names: list[str], codes: np.ndarray, ts: np.ndarray, source_index: int) -> pa.Table:
    """Per pair: min and max event time, and the event time of the first trade to arrive
    (`codes` and `ts` in arrival order)."""
    # each code's first index: an assignment keeps the last of repeated indices, so reversed
    first_at = np.full(len(names), -1, dtype=np.int64)
    first_at[codes[::-1]] = np.arange(len(codes) - 1, -1, -1, dtype=np.int64)
    present = np.flatnonzero(first_at >= 0)
    first_index = first_at[present]
    lows = np.full(len(names), np.iinfo(np.int64).max, dtype=np.int64)
    highs = np.full(len(names), np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(lows, codes, ts)
    np.maximum.at(highs, codes, ts)
    return pa.table({
        "kind": pa.array([SPAN] * len(present), pa.string()),
        "pair": pa.array([names[int(c)] for c in present], pa.string()),
        "source_index": pa.array(np.full(len(present), source_index, dtype=np.int32)),
        "span_min_ms": pa.array(lows[present]),
        "span_max_ms": pa.array(highs[present]),
        "span_first_ms": pa.array(ts[first_index]),
    })


def optimistic_pass_is_exact(
    spans: Sequence[tuple[int, str, int, int, int]],
    durations_ms: Sequence[int],
    arrival: ArrivalOrder,
) -> bool:
    """Whether the one-pass results (`contexts=None`) equal the exact two-pass ones.

    `spans`: (source_index, pair, min, max, first-arrived event time) per file and pair.
    Exact when (1) no file's trades share a window with another file except the windows of its
    first and last trade (no other file's span reaches between them), and (2) in `FILE` order,
    each file's first trade of a pair is no earlier than the pair's trades in earlier files (so
    their stream time cannot make any of this file's trades late).
    """
    by_pair: dict[str, list[tuple[int, int, int, int]]] = {}
    for index, pair, low, high, first in spans:
        by_pair.setdefault(pair, []).append((index, int(low), int(high), int(first)))
    for files in by_pair.values():
        files.sort()
        running = NO_STREAM_TIME
        for _, _low, high, first in files:
            if arrival is ArrivalOrder.FILE and running != NO_STREAM_TIME and first < running:
                return False
            running = max(running, high)
        for size in durations_ms:
            for index, low, high, _ in files:
                inner_lo = low - low % size + size  # end of the first trade's window
                inner_hi = high - high % size  # start of the last trade's window
                if inner_lo >= inner_hi:
                    continue
                for other, o_low, o_high, _ in files:
                    if other != index and o_low < inner_hi and o_high >= inner_lo:
                        return False
    return True


def _in_shared_window(
    window: TumblingWindow, codes: np.ndarray, ts: np.ndarray, context: list[FileContext]
) -> np.ndarray:
    """True for trades whose window overlaps another file's event-time span of the same pair."""
    shared = np.zeros(len(ts), dtype=bool)
    starts = window.start_of(ts)
    for code, ctx in enumerate(context):
        if not ctx.other_spans:
            continue
        mine = codes == code
        spans = np.array(ctx.other_spans, dtype=np.int64)
        mine_starts = starts[mine]
        if mine_starts.size == 0 or not (
            (mine_starts.min() <= spans[:, 1])
            & (mine_starts.max() + window.size_ms > spans[:, 0])
        ).any():
            continue  # no other span reaches from the pair's first window to its last
        ws = np.unique(mine_starts)
        overlap = ((ws[:, None] <= spans[None, :, 1])
                   & (ws[:, None] + window.size_ms > spans[None, :, 0])).any(axis=1)
        shared[mine] = np.isin(mine_starts, ws[overlap])
    return shared


def _candle_rows(names: list[str], size_ms: int, candles: dict[str, np.ndarray]) -> pa.Table:
    n = len(candles["window_start_ms"])
    starts = candles["window_start_ms"].astype(np.int64)
    return pa.table({
        "kind": pa.array([CANDLE] * n, pa.string()),
        "pair": pa.array([names[k] for k in candles["key"]], pa.string()),
        "window_ms": pa.array(np.full(n, size_ms, dtype=np.int64)),
        "window_start_ms": pa.array(starts),
        "window_end_ms": pa.array(starts + size_ms),
        **{c: pa.array(candles[c]) for c in ("open", "high", "low", "close", "volume", "vwap")},
        "trade_count": pa.array(candles["trade_count"].astype(np.int64)),
    })


def _rejected(rejected: pa.Table) -> pa.Table:
    n = rejected.num_rows
    ts = rejected["timestamp_ms"]
    return pa.table({
        "kind": pa.array([REJECTED] * n, pa.string()),
        "pair": rejected["pair"],
        "source_index": rejected["source_index"],
        "source": rejected["source"],
        "row_number": rejected["row_number"],
        "timestamp_ms": pc.if_else(pc.greater(ts, 0), ts, pa.scalar(None, pa.int64())),
        "reason": rejected["reject_reason"],
        "raw": rejected["raw"],
    })


def _counts(trades: pa.Table, rejected: pa.Table) -> pa.Table:
    counts: dict[str, list[int]] = {}
    for slot, table in enumerate((trades, rejected)):
        for row in table.group_by("pair").aggregate([("pair", "count")]).to_pylist():
            counts.setdefault(row["pair"], [0, 0])[slot] = row["pair_count"]
    names = sorted(counts)
    return pa.table({
        "kind": pa.array([COUNT] * len(names), pa.string()),
        "pair": pa.array(names, pa.string()),
        "rows_valid": pa.array([counts[p][0] for p in names], pa.int64()),
        "rows_rejected": pa.array([counts[p][1] for p in names], pa.int64()),
    })


def _conform(table: pa.Table) -> pa.Table:
    n = table.num_rows
    columns = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(n, f.type)
        for f in FILE_RESULT_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=FILE_RESULT_SCHEMA)


def file_results_function(
    *,
    pairs: Sequence[str],
    durations_ms: Sequence[int],
    grace_ms: int,
    arrival: ArrivalOrder,
    contexts: Contexts | None,
    parse: Callable[[bytes, str, int], pa.Table] = parse_trade_file,
) -> Callable[[bytes, str, int], pa.Table]:
    """`file_results` with the job's parameters bound: the function mapped over input files
    (`parse`: the parser of one input's bytes, e.g. `batch.kafka_input.parse_kafka_lines`)."""
    pairs, durations = list(pairs), list(durations_ms)
    known = None if contexts is None else dict(contexts)

    def run(content: bytes, path: str, source_index: int) -> pa.Table:
        return file_results(
            content, path, source_index, pairs=pairs, durations_ms=durations,
            grace_ms=grace_ms, arrival=arrival, contexts=known, parse=parse,
        )

    return run


SHARED_TRADE_SCHEMA = pa.schema([
    pa.field("source_index", pa.int32()),
    pa.field("row_index", pa.int64()),
    pa.field("timestamp_ms", pa.int64()),
    pa.field("trade_id", pa.int64()),
    pa.field("price", pa.float64()),
    pa.field("volume", pa.float64()),
])


def encode_trades(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def decode_trades(blob: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(blob)).read_all()

"""One input file's bytes -> trade rows plus rejected rows (pure; no Spark).

Formats, told by the file name:
- `*.csv`: a Kraken trade CSV in any of Kraken's formats, parsed by
  `features.kraken_formats.read_trades_csv` (the pair comes from the file name);
- `*.parquet` / `*.pq`: rows in the trade schema (`TRADE_ARROW_SCHEMA`; extra columns ignored);
- `*.jsonl` / `*.ndjson` / `*.json`: the `trades` topic's archive, one wire record per line.

A row that cannot be parsed, or breaks the trade rules (`features.schemas.trade`), is not a
trade: it comes back in the same table with `reject_reason` set and its text in `raw`, so the
job counts it and writes it to the rejected-rows table instead of failing. A file that cannot be
read at all becomes one rejected row (`row_number` null).

Every row carries `source_index` (the file's position in the input list) and `row_index` (its
position among the file's data rows): together they are the file order.

Window closure records (`features.schemas.window_closure`) in a JSON-lines archive of the topic
are not trades: each comes back as a row with `closure_rule` set (null on every other row), its
pair, `timestamp_ms` = its `through_ms`, `closure_window_ms` = its `window_ms` (0: every
duration), `row_index` = the number of trade rows before it (it closes windows for the rows at
that index and after), `row_number` its line and `raw` its text. A malformed one is rejected.

Event-time sanity (`features.event_time`), as the stream applies it: an archive of the `trades`
topic may keep each record's Kafka timestamp, `kafka_timestamp_ms` (epoch ms; a field of each
JSON line, a column of a Parquet file). A trade whose `timestamp_ms` lies more than the maximum
skew ahead of it is rejected with the stream's reason, so the backfill drops exactly the trades
the candle processor dead-lettered. Where it is missing or null (Kraken CSVs never have one:
they hold no ingestion time) the rule does not apply, and a trade stamped in the far future is
taken as it is.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from features.event_time import (
    DEFAULT_MAX_EVENT_TIME_SKEW_MS,
    NO_INGESTION_TIME,
    ahead_of_ingestion,
    skew_reason,
)
from features.kraken_formats import CSV_LAYOUTS, pair_from_filename, read_trades_csv
from features.schemas.trade import (
    ORDER_TYPES,
    SIDES,
    TRADE_ARROW_SCHEMA,
    invalid_trade_reasons,
)
from features.schemas.window_closure import CLOSURE_TAG, WindowClosure, is_closure, parse_closure

PARSED_TRADE_SCHEMA = pa.schema(
    [
        *TRADE_ARROW_SCHEMA,
        pa.field("source_index", pa.int32(), nullable=False),
        pa.field("row_index", pa.int64(), nullable=False),
        pa.field("reject_reason", pa.string()),  # null: a valid trade
        pa.field("source", pa.string()),  # set on rejected rows only
        pa.field("row_number", pa.int64()),  # 1-based line in the file, rejected rows only
        pa.field("raw", pa.string()),  # the row's text, rejected rows only
        pa.field("closure_rule", pa.string()),  # closure records only (see the docstring)
        pa.field("closure_window_ms", pa.int64()),  # closure records only; 0: every duration
    ]
)

INGESTION_COLUMN = "kafka_timestamp_ms"
"""The archive's field holding each record's Kafka timestamp (the ingestion time), if kept."""

_NUMBER = r"^\s*[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|nan|NaN|NAN|inf|Inf|infinity)\s*$"
_NUMERIC_CSV_COLUMNS = ("time", "Time", "price", "Price", "volume", "Amount")


def file_format(path: str) -> str:
    """`csv`, `parquet` or `jsonl`, from the file name."""
    name = path.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise ValueError(f"unknown trade file format: {path} (csv, parquet or jsonl)")


def parse_trade_file(
    content: bytes, path: str, source_index: int, *,
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
) -> pa.Table:
    """All rows of one file in `PARSED_TRADE_SCHEMA`, in file order. `max_event_time_skew_ms`
    must be the stream's (`BRAID_MAX_EVENT_TIME_SKEW`) for the same trades to be rejected."""
    ingestion: np.ndarray | None = None
    closures: list[Closure] = []
    try:
        if path.lower().endswith(".gz"):
            import gzip

            content = gzip.decompress(content)
        fmt = file_format(path)
        if fmt == "csv":
            trades, rejects = _parse_csv(content, path)
        elif fmt == "parquet":
            table = pq.read_table(io.BytesIO(content))
            trades, rejects = _conform(table), []
            ingestion = _ingestion(table)
        else:
            trades, rejects, ingestion, closures = _parse_jsonl(content)
    except Exception as exc:  # the whole file is unreadable: one rejected row says why
        return _rejected_table(
            [(None, f"unreadable file: {type(exc).__name__}: {exc}"[:500], None)],
            path, source_index, start_index=0,
        )
    parsed = _assemble(trades, rejects, path, source_index,
                       ingestion=ingestion, max_event_time_skew_ms=max_event_time_skew_ms)
    if not closures:
        return parsed
    return pa.concat_tables([parsed, _closure_table(closures, path, source_index)])


# --- formats -----------------------------------------------------------------------------------

Reject = tuple[int | None, str, str | None]  # (1-based line, reason, raw text)
Closure = tuple[int, int, WindowClosure, str]  # (trade rows before it, 1-based line, it, text)


def _parse_csv(content: bytes, path: str) -> tuple[pa.Table, list[Reject]]:
    pair = pair_from_filename(path)
    try:
        return read_trades_csv(io.BytesIO(content), pair=pair), []
    except (pa.ArrowInvalid, ValueError):
        pass
    # Slow path, only for files with bad rows: read every cell as text, set aside rows with a
    # wrong field count or a non-number in a numeric column, and parse the rest as usual.
    header_line = content.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    names = [n.strip() for n in header_line.split(",")]
    if tuple(names) not in CSV_LAYOUTS:
        raise ValueError(f"not a Kraken trade CSV header: {header_line}")
    rejects: list[Reject] = []

    def on_invalid(row: Any) -> str:
        rejects.append((row.number, f"unparseable: {row.actual_columns} fields, expected "
                        f"{row.expected_columns}", row.text))
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(content),
        read_options=pacsv.ReadOptions(use_threads=False),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=False
        ),
    )
    bad_lines = {number for number, _, _ in rejects if number is not None}
    line_numbers = _data_line_numbers(content, bad_lines, table.num_rows)
    keep = np.ones(table.num_rows, dtype=bool)
    for column in (c for c in _NUMERIC_CSV_COLUMNS if c in names):
        ok = pc.match_substring_regex(table[column], _NUMBER).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(keep & ~ok):
            row = [table[n][int(i)].as_py() for n in names]
            reason = f"unparseable {column}: {row[names.index(column)]!r}"
            rejects.append((int(line_numbers[i]), reason, ",".join(row)))
        keep &= ok
    good = table.filter(pa.array(keep))
    buffer = io.BytesIO()
    pacsv.write_csv(good, buffer)
    trades = read_trades_csv(io.BytesIO(buffer.getvalue()), pair=pair)
    rejects.sort(key=lambda r: r[0] or 0)
    return trades, rejects


def _data_line_numbers(content: bytes, skipped: set[int], count: int) -> np.ndarray:
    """1-based line numbers of the data rows pyarrow kept (header is line 1)."""
    lines = content.split(b"\n")
    numbers = [i + 1 for i, line in enumerate(lines[1:], start=1)
               if line.strip() and (i + 1) not in skipped]
    return np.array(numbers[:count] + [0] * max(0, count - len(numbers)), dtype=np.int64)


def _conform(table: pa.Table) -> pa.Table:
    """Trade columns in schema order and types; nulls become values the trade rules reject."""
    columns = {}
    fill: dict[str, Any] = {"price": float("nan"), "volume": float("nan"), "trade_id": -1,
                            "timestamp_ms": 0, "pair": "", "side": "", "order_type": ""}
    for field in TRADE_ARROW_SCHEMA:
        column = table[field.name].cast(field.type)
        columns[field.name] = pc.fill_null(column, pa.scalar(fill[field.name], field.type))
    return pa.table(columns, schema=TRADE_ARROW_SCHEMA)


def _ingestion(table: pa.Table) -> np.ndarray | None:
    """The `INGESTION_COLUMN` of a parsed table (nulls: `NO_INGESTION_TIME`), None if absent."""
    if INGESTION_COLUMN not in table.column_names:
        return None
    column = pc.fill_null(table[INGESTION_COLUMN].cast(pa.int64()), NO_INGESTION_TIME)
    return np.asarray(column.to_numpy(), dtype=np.int64)


def _parse_jsonl(
    content: bytes,
) -> tuple[pa.Table, list[Reject], np.ndarray | None, list[Closure]]:
    """Trades, rejected lines, the ingestion times (if kept) and the closure records."""
    closure_lines: list[tuple[int, bytes]] = []
    rejects: list[Reject] = []
    if CLOSURE_TAG in content:  # rare: blank the closure lines (line numbers stay)
        lines = content.split(b"\n")
        for i, line in enumerate(lines):
            if is_closure(line):
                closure_lines.append((i, line))
                lines[i] = b""
        content = b"\n".join(lines)
    trades, row_lines, ingestion = _parse_trade_lines(content, rejects,
                                                      need_lines=bool(closure_lines))
    closures: list[Closure] = []
    for index, line in closure_lines:
        text = line.decode("utf-8", "replace")
        try:
            record = parse_closure(line)
        except ValueError as exc:
            rejects.append((index + 1, f"unparseable: {exc}"[:300], text))
            continue
        before = int(np.searchsorted(row_lines, index))
        closures.append((before, index + 1, record, text))
    rejects.sort(key=lambda r: r[0] or 0)
    return trades, rejects, ingestion, closures


def _parse_trade_lines(
    content: bytes, rejects: list[Reject], *, need_lines: bool,
) -> tuple[pa.Table, np.ndarray, np.ndarray | None]:
    """The trade lines: the trades, each one's 0-based line (when `need_lines`), the ingestion
    times if kept; unreadable lines are added to `rejects`."""
    wire = pa.schema([*(f.with_nullable(True) for f in TRADE_ARROW_SCHEMA),
                      pa.field(INGESTION_COLUMN, pa.int64())])
    try:
        table = pajson.read_json(
            io.BytesIO(content),
            parse_options=pajson.ParseOptions(explicit_schema=wire,
                                              unexpected_field_behavior="ignore"),
        )
        # every line that is not blank is a row (the reader skips blank lines)
        row_lines = (np.flatnonzero([bool(line.strip()) for line in content.split(b"\n")])
                     if need_lines else np.empty(0, dtype=np.int64))
        return _conform(table), row_lines, _ingestion(table)
    except pa.ArrowInvalid:
        pass
    rows: list[dict[str, Any]] = []
    ingestion: list[int] = []
    kept: list[int] = []
    for number, line in enumerate(content.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            kafka_ms = record.get(INGESTION_COLUMN)
            row_ingestion = NO_INGESTION_TIME if kafka_ms is None else int(kafka_ms)
            rows.append({
                "pair": str(record["pair"]),
                "price": float(record["price"]),
                "volume": float(record["volume"]),
                "side": str(record["side"]),
                "order_type": str(record["order_type"]),
                "trade_id": int(record["trade_id"]),
                "timestamp_ms": int(record["timestamp_ms"]),
            })
            ingestion.append(row_ingestion)
            kept.append(number - 1)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            rejects.append((number, f"unparseable: {type(exc).__name__}: {exc}"[:300], line))
    return (pa.Table.from_pylist(rows, schema=TRADE_ARROW_SCHEMA),
            np.asarray(kept, dtype=np.int64), np.asarray(ingestion, dtype=np.int64))


def _closure_table(closures: list[Closure], path: str, source_index: int) -> pa.Table:
    """Closure records as rows of `PARSED_TRADE_SCHEMA` (see the module docstring)."""
    m = len(closures)
    return pa.table(
        {
            "pair": pa.array([c[2].pair for c in closures], pa.string()),
            "price": pa.array(np.full(m, np.nan)),
            "volume": pa.array(np.full(m, np.nan)),
            "side": pa.array([""] * m, pa.string()),
            "order_type": pa.array([""] * m, pa.string()),
            "trade_id": pa.array(np.full(m, -1, np.int64)),
            "timestamp_ms": pa.array([c[2].through_ms for c in closures], pa.int64()),
            "source_index": pa.array(np.full(m, source_index, np.int32)),
            "row_index": pa.array([c[0] for c in closures], pa.int64()),
            "reject_reason": pa.nulls(m, pa.string()),
            "source": pa.array([path] * m, pa.string()),
            "row_number": pa.array([c[1] for c in closures], pa.int64()),
            "raw": pa.array([c[3] for c in closures], pa.string()),
            "closure_rule": pa.array([str(c[2].closure) for c in closures], pa.string()),
            "closure_window_ms": pa.array([c[2].window_ms or 0 for c in closures], pa.int64()),
        },
        schema=PARSED_TRADE_SCHEMA,
    )


# --- validation and assembly ---------------------------------------------------------------------


def trade_reject_reasons(
    trades: pa.Table, ingestion: np.ndarray | None = None,
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
) -> np.ndarray:
    """Per row: None for a valid trade, else the first broken rule (the shared numeric rules of
    `invalid_trade_reasons`, then pair, side and order type, then, where `ingestion` gives a
    row's Kafka timestamp, the event-time skew of `features.event_time`)."""
    reasons = invalid_trade_reasons(
        trades["price"].to_numpy(),
        trades["volume"].to_numpy(),
        trades["timestamp_ms"].to_numpy(),
        trades["trade_id"].to_numpy(),
    )
    pair = trades["pair"]
    bad_pair = pc.or_(
        pc.or_(pc.equal(pc.utf8_length(pair), 0), pc.greater(pc.utf8_length(pair), 32)),
        pc.match_substring(pair, "|"),
    )
    checks = (
        (bad_pair, "pair is missing or malformed"),
        (pc.invert(pc.is_in(trades["side"], pa.array(SIDES))), "side is not buy, sell or unknown"),
        (pc.invert(pc.is_in(trades["order_type"], pa.array(ORDER_TYPES))),
         "order_type is not market, limit or unknown"),
    )
    for mask, reason in checks:
        hit = mask.to_numpy(zero_copy_only=False)
        if hit.any():
            reasons[hit & _is_none(reasons)] = reason
    if ingestion is not None:
        ahead = ahead_of_ingestion(trades["timestamp_ms"].to_numpy(), ingestion,
                                   max_event_time_skew_ms)
        reasons[ahead & _is_none(reasons)] = skew_reason(max_event_time_skew_ms)
    return reasons


def _is_none(values: np.ndarray) -> np.ndarray:
    """True where an object array of reasons (non-empty strings or None) holds None."""
    return ~values.astype(bool)


def _assemble(
    trades: pa.Table, rejects: list[Reject], path: str, source_index: int, *,
    ingestion: np.ndarray | None = None,
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
) -> pa.Table:
    n = trades.num_rows
    reasons = (trade_reject_reasons(trades, ingestion, max_event_time_skew_ms) if n
               else np.empty(0, dtype=object))
    invalid = ~_is_none(reasons)
    if invalid.any():
        raw_text = np.full(n, None, dtype=object)
        rows = trades.filter(pa.array(invalid)).to_pylist()
        raw_text[invalid] = [json.dumps(r, default=str) for r in rows]
        source_text = np.full(n, None, dtype=object)
        source_text[invalid] = path
        raw, source = pa.array(raw_text, pa.string()), pa.array(source_text, pa.string())
        reason_column = pa.array(reasons, pa.string())
    else:  # the common case: no per-row Python work
        raw = source = reason_column = pa.nulls(n, pa.string())
    parsed = trades.append_column(
        PARSED_TRADE_SCHEMA.field("source_index"), pa.array(np.full(n, source_index, np.int32))
    ).append_column(PARSED_TRADE_SCHEMA.field("row_index"), pa.array(np.arange(n, dtype=np.int64)))
    parsed = (
        parsed.append_column(PARSED_TRADE_SCHEMA.field("reject_reason"), reason_column)
        .append_column(PARSED_TRADE_SCHEMA.field("source"), source)
        .append_column(PARSED_TRADE_SCHEMA.field("row_number"), pa.nulls(n, pa.int64()))
        .append_column(PARSED_TRADE_SCHEMA.field("raw"), raw)
        .append_column(PARSED_TRADE_SCHEMA.field("closure_rule"), pa.nulls(n, pa.string()))
        .append_column(PARSED_TRADE_SCHEMA.field("closure_window_ms"), pa.nulls(n, pa.int64()))
    )
    if not rejects:
        return parsed
    unparsed = _rejected_table(rejects, path, source_index, start_index=n)
    return pa.concat_tables([parsed, unparsed])


def _rejected_table(
    rejects: list[Reject], path: str, source_index: int, *, start_index: int
) -> pa.Table:
    m = len(rejects)
    return pa.table(
        {
            "pair": pa.array([_pair_or_empty(path)] * m, pa.string()),
            "price": pa.array(np.full(m, np.nan)),
            "volume": pa.array(np.full(m, np.nan)),
            "side": pa.array([""] * m, pa.string()),
            "order_type": pa.array([""] * m, pa.string()),
            "trade_id": pa.array(np.full(m, -1, np.int64)),
            "timestamp_ms": pa.array(np.zeros(m, np.int64)),
            "source_index": pa.array(np.full(m, source_index, np.int32)),
            "row_index": pa.array(np.arange(start_index, start_index + m, dtype=np.int64)),
            "reject_reason": pa.array([r[1] for r in rejects], pa.string()),
            "source": pa.array([path] * m, pa.string()),
            "row_number": pa.array([r[0] for r in rejects], pa.int64()),
            "raw": pa.array([r[2] for r in rejects], pa.string()),
            "closure_rule": pa.nulls(m, pa.string()),
            "closure_window_ms": pa.nulls(m, pa.int64()),
        },
        schema=PARSED_TRADE_SCHEMA,
    )


def _pair_or_empty(path: str) -> str:
    try:
        return pair_from_filename(path)
    except ValueError:
        return ""

"""What the Lambda tests check: candles and indicators of two engines equal value for value, an
independent reference built from `features/` alone, and `braid consistency` over the rows the
online sink wrote.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from batch import delta_log
from features.candles import aggregate_trades, finalize
from features.indicators import INDICATOR_COLUMNS, compute_indicators
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA
from features.windows import NO_STREAM_TIME, TumblingWindow, late_mask

KEY = ["pair", "window_ms", "window_start_ms"]
CANDLE_FLOATS = ["open", "high", "low", "close", "volume", "vwap"]
INDICATOR_FLOATS = ["close", *INDICATOR_COLUMNS]


def read_sorted(uri: str, schema: pa.Schema) -> pa.Table:
    """A Delta table (the backfill's `candles` or `indicators`) as rows of `schema`, by key."""
    return sort_rows(delta_log.read_table(uri).select(schema.names).cast(schema))


def sort_rows(table: pa.Table) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in KEY])


def reference_outputs(trades: pa.Table, durations: list[int],
                      grace_ms: int) -> tuple[pa.Table, pa.Table]:
    """pandas + features/ only: per pair in arrival order (the table's), lateness, candles,
    indicators."""
    frame = trades.to_pandas()
    candles, indicators = [], []
    for pair, rows in frame.groupby("pair", sort=True):
        ts = rows["timestamp_ms"].to_numpy()
        key = np.zeros(len(rows), dtype=np.int64)
        for size in durations:
            window = TumblingWindow(size, grace_ms)
            ok = ~late_mask(window, key, ts, np.array([NO_STREAM_TIME]))
            c = finalize(aggregate_trades(
                window, key[ok], ts[ok], rows["trade_id"].to_numpy()[ok],
                rows["price"].to_numpy()[ok], rows["volume"].to_numpy()[ok],
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
    return (to_table(pd.concat(candles), CANDLE_ARROW_SCHEMA),
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


def assert_served_rows_consistent(candles: pa.Table, indicators: pa.Table, offline_root: Path,
                                  repo: Path, start: datetime, end: datetime, *,
                                  every_row: bool = False) -> int:
    """The stream's candles and indicators go through the online sink in batches of 500, as a
    replay of the topics would (the newest row per pair and view of a batch is written and
    logged), or with `every_row` one batch per window end, as the live stream hands them over
    (every row is written and logged); `braid consistency`'s report then judges every logged
    row against the backfill's Delta tables under `offline_root` at the same event time (Feast's
    DuckDB offline store): every row compared, none missing or extra, every feature 100%.
    Returns the rows compared."""
    from serving.consistency import consistency_report, written_rows
    from streaming.runtime.records import InputBatch
    from streaming.sinks.online_store import OnlineSinkOperator, OnlineWriter
    from tests.integration.serving.offline_tables import local_repo

    store = local_repo(repo, offline_root)
    operator = OnlineSinkOperator(OnlineWriter(store), {"candles": "candles",
                                                        "technical_indicators": "indicators"},
                                  log_topic="online_writes")
    logged: list[bytes] = []
    for topic, table in (("candles", candles), ("technical_indicators", indicators)):
        rows = sorted(table.to_pylist(), key=lambda r: (r["window_end_ms"], r["pair"]))
        batches = ([[r for r in rows if r["window_end_ms"] == end]
                    for end in sorted({r["window_end_ms"] for r in rows})] if every_row
                   else [rows[first:first + 500] for first in range(0, len(rows), 500)])
        for batch in batches:
            values: list[bytes | None] = [orjson.dumps(r) for r in batch]
            emission = operator.process(InputBatch(topic, 0, np.arange(len(values)),
                                                   [None] * len(values), values), 0)
            # durations the repository has no view for (1d, 5m) are refused by name
            assert all(d.reason.startswith("online-sink: no feature view")
                       for d in emission.dead_letters), emission.dead_letters[:1]
            logged += [r.value for r in emission.records]
    written = written_rows(logged)
    assert set(written) >= {"candles_1m", "indicators_1m"}
    report = consistency_report(store, start, end, "markets", written)
    for view in report.views:
        assert view.compared == len(written.get(view.view, {})), view
        assert (view.missing, view.extra) == (0, 0), view
    mismatched = [(f.view, f.feature, f.examples[:1]) for f in report.features
                  if f.match_rate < 1.0]
    assert mismatched == []
    return sum(v.compared for v in report.views)

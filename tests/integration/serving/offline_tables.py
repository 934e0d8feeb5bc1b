"""Small Delta offline tables of real Kraken trades and a Feast repo over them (serving tests).

The tables are written as the trades backfill writes them (`candles`, `indicators`: rows of
`CANDLE_ARROW_SCHEMA` / `INDICATOR_ARROW_SCHEMA`, partitioned by pair, window_ms, day), with the
`features/` candle and indicator code, through delta-rs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from feast import FeatureStore

from features.candles import aggregate_trades, finalize
from features.indicators import INDICATOR_COLUMNS, compute_indicators
from features.kraken_formats import read_trades_csv
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA
from features.windows import TumblingWindow
from serving.feast_definitions import definitions
from serving.settings import FeastSettings
from serving.store import write_repo_config

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "kraken-trades"
# Two real pairs, the first days of May 2018 (a few thousand one-minute candles each).
TRADE_FILES = {"XBT/USD": "XBTUSD_kraken_2018_trades.sorted.csv",
               "ETH/USD": "ETHUSD_kraken_2018_trades.sorted.csv"}
DURATIONS_MS = (60_000, 3_600_000)


def candle_tables(days: int = 3) -> tuple[pa.Table, pa.Table]:
    """Candles and indicators of the first `days` days of each file, per duration."""
    candles, indicators = [], []
    for pair, name in TRADE_FILES.items():
        path = DATA / name
        if not path.exists():
            pytest.skip(f"real trades missing: {path}")
        trades = read_trades_csv(str(path), pair)
        ts = trades["timestamp_ms"].to_numpy()
        trades = trades.filter(pa.array(ts < ts.min() - ts.min() % 86_400_000 + days * 86_400_000))
        for window_ms in DURATIONS_MS:
            final = finalize(aggregate_trades(
                TumblingWindow(window_ms), np.zeros(trades.num_rows, dtype=np.int64),
                trades["timestamp_ms"].to_numpy(), trades["trade_id"].to_numpy(),
                trades["price"].to_numpy(), trades["volume"].to_numpy()))
            n = len(final["open"])
            base = {"pair": pa.array([pair] * n), "window_ms": pa.array(np.full(n, window_ms)),
                    "window_start_ms": final["window_start_ms"],
                    "window_end_ms": final["window_start_ms"] + window_ms}
            candles.append(pa.table({**base, **{c: final[c] for c in
                                                CANDLE_ARROW_SCHEMA.names[4:]}},
                                    schema=CANDLE_ARROW_SCHEMA))
            values = compute_indicators(final)
            indicators.append(pa.table(
                {**base, "close": final["close"], **{c: values[c] for c in INDICATOR_COLUMNS}},
                schema=INDICATOR_ARROW_SCHEMA))
    return pa.concat_tables(candles), pa.concat_tables(indicators)


TABLE_PARTITIONS = ["pair", "window_ms", "month"]
"""The backfill's layout (`batch.backfill.TABLE_PARTITIONS`)."""


def with_day(table: pa.Table) -> pa.Table:
    """`table` with the backfill's `day` (UTC date of the window start) and `month` (its
    `YYYY-MM`, the partition column)."""
    starts = pc.cast(table["window_start_ms"], pa.timestamp("ms", "UTC"))
    days = pc.cast(starts, pa.date32())
    return table.append_column("day", days).append_column("month", pc.strftime(starts, "%Y-%m"))


def local_repo(repo: Path, offline_root: Path, redis: str | None = None) -> FeatureStore:
    """A Feast repo at `repo` (SQLite online, or Redis at Feast connection string `redis`;
    Braid's DuckDB offline store), definitions applied."""
    online = (f"online_store:\n  type: redis\n  connection_string: '{redis}'\n" if redis
              else None)
    write_repo_config(repo, f"p{hashlib.sha1(str(repo).encode()).hexdigest()[:12]}", online)
    store = FeatureStore(repo_path=str(repo))
    entities, views, services = definitions(FeastSettings(offline_root=str(offline_root)))
    store.apply([*entities, *views, *services])
    return store



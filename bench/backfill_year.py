"""Year-scale input for `bench_backfill.py --year`, and the peak-memory sampler it uses.

`write_year_files` generates a year of synthetic trades in which **every minute of every pair
is traded** (1 + Poisson(8.5) trades a minute, about 9.5: 8 pairs x 365 days is about 40M
trades, 4.2M one-minute candles), one Parquet file per `days_per_file` days holding every pair,
files following each other in time (as daily archives do). It writes file by file, so the
generator never holds more than one file's trades.

`PeakMemory` samples the resident memory of this process and all its descendants (the Spark
JVM and its Python workers) and keeps the largest sum.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import TracebackType

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from features.schemas.trade import TRADE_ARROW_SCHEMA

MINUTE_MS = 60_000
DAY_MS = 86_400_000
EXTRA_TRADES_PER_MINUTE = 8.5
"""Each minute has 1 + Poisson(this) trades: never an empty minute."""


@dataclass(frozen=True)
class YearInput:
    """The generated files and what they span."""

    paths: list[str]
    trades: int
    start: date
    end: date  # exclusive


def write_year_files(
    folder: Path, pairs: list[str], base_prices: list[float], days: int,
    start_ms: int, days_per_file: int = 5, seed: int = 0,
) -> YearInput:
    """`days` days of trades for `pairs`, every minute traded; see the module docstring."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    last_price = np.array(base_prices[: len(pairs)], dtype=np.float64)
    next_id = np.ones(len(pairs), dtype=np.int64)
    paths: list[str] = []
    total = 0
    for first_day in range(0, days, days_per_file):
        span_days = min(days_per_file, days - first_day)
        minutes = span_days * 1440
        minute_starts = (start_ms + first_day * DAY_MS
                         + np.arange(minutes, dtype=np.int64) * MINUTE_MS)
        pieces = []
        for code, pair in enumerate(pairs):
            counts = 1 + rng.poisson(EXTRA_TRADES_PER_MINUTE, minutes)
            n = int(counts.sum())
            ts = np.sort(np.repeat(minute_starts, counts) + rng.integers(0, MINUTE_MS, n))
            price = last_price[code] * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
            last_price[code] = price[-1]
            ids = next_id[code] + np.arange(n, dtype=np.int64)
            next_id[code] += n
            pieces.append(pa.table({
                "pair": pa.array([pair] * n, pa.string()),
                "price": np.round(price, 6),
                "volume": rng.lognormal(-1.0, 1.0, n),
                "side": pa.array(np.where(rng.random(n) < 0.5, "buy", "sell"), pa.string()),
                "order_type": pa.array(np.where(rng.random(n) < 0.4, "market", "limit"),
                                       pa.string()),
                "trade_id": ids,
                "timestamp_ms": ts,
            }, schema=TRADE_ARROW_SCHEMA))
        table = pa.concat_tables(pieces).sort_by("timestamp_ms")
        path = folder / f"trades-{first_day:04d}.parquet"
        pq.write_table(table, path, compression="zstd")
        paths.append(str(path))
        total += table.num_rows
    first = datetime.fromtimestamp(start_ms / 1000, UTC).date()
    return YearInput(paths, total, first, first + timedelta(days=days))


class PeakMemory:
    """Largest resident memory (bytes) of this process plus all its descendants, sampled every
    `interval_s` in a background thread while the `with` block runs."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_bytes = max(self.peak_bytes, total)
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20

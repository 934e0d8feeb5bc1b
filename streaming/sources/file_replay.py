"""Replay historical trades from files: Kraken trade CSVs (any format) and trade Parquet files.

Files are merged into one stream in event-time order; trades with equal timestamps keep file
order (the first file given first), then row order within the file. The replay runs at full
speed (``speedup=None``) or paced by event time: ``speedup=60`` delivers one minute of event time
per wall-clock second, measured from the first trade. The clock and sleep are injectable so
pacing is tested without real waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from features.kraken_formats import pair_from_filename, read_trades_csv
from features.schemas.trade import TRADE_ARROW_SCHEMA
from streaming.sources.base import TradeSource, conform

log = structlog.get_logger(__name__)


def read_trade_file(path: str | Path, pair: str | None = None) -> pa.Table:
    """One file as trade columns: ``.parquet`` in the trade schema, else a Kraken CSV.

    ``path`` is local or any fsspec URL (``gs://bucket/x.parquet`` through gcsfs, ``s3://``,
    ``memory://``). ``pair`` overrides the pair told by a CSV's file name (Parquet files carry
    their pair).
    """
    path = str(path)
    if "://" in path:
        fs, inner = fsspec.core.url_to_fs(path)
        with fs.open(inner, "rb") as stream:
            if path.endswith((".parquet", ".pq")):
                return conform(pq.read_table(stream))
            return read_trades_csv(stream, pair=pair or pair_from_filename(path))
    if path.endswith((".parquet", ".pq")):
        return conform(pq.read_table(path))
    return read_trades_csv(path, pair=pair)


def merge_by_event_time(tables: Sequence[pa.Table]) -> pa.Table:
    """All rows of ``tables`` sorted by ``timestamp_ms``; ties keep table order, then row order."""
    if not tables:
        return TRADE_ARROW_SCHEMA.empty_table()
    merged = pa.concat_tables([conform(t) for t in tables])
    ts = merged["timestamp_ms"].to_numpy()
    # The concatenation is in (file, row) order, so a stable sort on time alone breaks ties right.
    order = np.argsort(ts, kind="stable")
    return merged.take(pa.array(order))


class FileReplaySource(TradeSource):
    """Trades of ``files`` merged in event-time order, optionally paced by ``speedup``."""

    name = "file"

    def __init__(
        self,
        *,
        files: Sequence[str | Path],
        pair: str | None = None,
        speedup: float | None = None,
        chunk_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_sleep_s: float = 0.5,
    ) -> None:
        if not files:
            raise ValueError("at least one file is needed")
        if speedup is not None and speedup <= 0:
            raise ValueError("speedup must be positive (None replays at full speed)")
        self.files = [str(f) for f in files]
        self.pair = pair
        self.speedup = speedup
        self.chunk_size = chunk_size
        self.clock = clock
        self.sleep = sleep
        self.max_sleep_s = max_sleep_s
        self._closed = False

    def close(self) -> None:
        self._closed = True

    def batches(self) -> Iterator[pa.Table]:
        trades = merge_by_event_time([read_trade_file(f, self.pair) for f in self.files])
        log.info("replaying files", files=self.files, trades=trades.num_rows, speedup=self.speedup)
        n = trades.num_rows
        if self.speedup is None:
            for start in range(0, n, self.chunk_size):
                if self._closed:
                    return
                yield trades.slice(start, self.chunk_size)
            return
        ts = trades["timestamp_ms"].to_numpy()
        # Seconds after the replay start at which each trade is due.
        due = (ts - ts[0]) / 1000.0 / self.speedup if n else ts.astype(float)
        started = self.clock()
        i = 0
        while i < n and not self._closed:
            elapsed = self.clock() - started
            ready = int(np.searchsorted(due, elapsed, side="right"))
            if ready > i:
                end = min(ready, i + self.chunk_size)
                yield trades.slice(i, end - i)
                i = end
            else:
                self.sleep(min(self.max_sleep_s, due[i] - elapsed))

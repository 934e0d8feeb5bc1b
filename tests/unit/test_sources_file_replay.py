"""File replay: Kraken CSVs of every format and Parquet, merged by event time, paced by speed-up."""

from __future__ import annotations

import csv
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.schemas.trade import TRADE_ARROW_SCHEMA
from streaming.sources import create_source
from streaming.sources.file_replay import FileReplaySource

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "kraken-trades"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"recorded data missing: {DATA}")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def write_2018_csv(path: Path, rows: list[tuple[float, float]]) -> Path:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["time", "price", "volume", "buy_or_sell", "market_or_limit", "misc"])
        for t, price in rows:
            out.writerow([t, price, 1.0, "b", "l", ""])
    return path


@needs_data
@pytest.mark.parametrize("path", sorted(DATA.glob("*.csv")), ids=lambda p: p.name)
def test_every_kraken_csv_format_replays_all_its_rows(path: Path) -> None:
    with path.open() as f:
        expected_rows = sum(1 for line in f if line.strip()) - 1  # minus the header
    tables = list(FileReplaySource(files=[path], chunk_size=50_000).batches())
    assert all(t.schema == TRADE_ARROW_SCHEMA for t in tables)
    assert sum(t.num_rows for t in tables) == expected_rows


@needs_data
def test_two_real_files_merge_into_one_event_time_ordered_stream() -> None:
    files = [DATA / f"{pair}_kraken_2018_trades.sorted.csv" for pair in ("XBTUSD", "ETHUSD")]
    merged = pa.concat_tables(FileReplaySource(files=files, chunk_size=100_000).batches())
    ts = merged["timestamp_ms"].to_numpy()
    assert np.all(np.diff(ts) >= 0)
    assert set(merged["pair"].unique().to_pylist()) == {"XBT/USD", "ETH/USD"}
    assert merged.num_rows == 152_019 + 162_235  # the data README's counts


def test_equal_timestamps_keep_file_order_then_row_order(tmp_path: Path) -> None:
    a = write_2018_csv(tmp_path / "XBTUSD_a.csv", [(100.0, 1.0), (101.0, 2.0), (101.0, 3.0)])
    b = write_2018_csv(tmp_path / "ETHUSD_b.csv", [(99.0, 10.0), (101.0, 20.0), (102.0, 30.0)])
    got = pa.concat_tables(FileReplaySource(files=[a, b]).batches())
    assert got["price"].to_pylist() == [10.0, 1.0, 2.0, 3.0, 20.0, 30.0]


def test_parquet_files_in_the_trade_schema_merge_with_csv(tmp_path: Path) -> None:
    csv_file = write_2018_csv(tmp_path / "XBTUSD_x.csv", [(10.0, 1.0), (30.0, 3.0)])
    table = pa.table({"pair": ["ETH/USD"], "price": [2.0], "volume": [0.5], "side": ["sell"],
                      "order_type": ["market"], "trade_id": [7], "timestamp_ms": [20_000]})
    pq.write_table(table, tmp_path / "eth.parquet")
    got = pa.concat_tables(FileReplaySource(files=[csv_file, tmp_path / "eth.parquet"]).batches())
    assert got["pair"].to_pylist() == ["XBT/USD", "ETH/USD", "XBT/USD"]
    assert got.schema == TRADE_ARROW_SCHEMA


def test_speedup_delivers_each_trade_when_its_event_time_is_due(tmp_path: Path) -> None:
    # Event times 0, 30, 60, 120 s after the first; at speedup 60 they are due at 0, .5, 1, 2 s.
    f = write_2018_csv(tmp_path / "XBTUSD_p.csv",
                       [(1000.0, 1.0), (1030.0, 2.0), (1060.0, 3.0), (1120.0, 4.0)])
    clock = FakeClock()
    source = FileReplaySource(files=[f], speedup=60, clock=clock, sleep=clock.sleep)
    delivered = [(clock.now, batch["price"].to_pylist()) for batch in source.batches()]
    assert delivered == [(0.0, [1.0]), (0.5, [2.0]), (1.0, [3.0]), (2.0, [4.0])]


def test_full_speed_never_sleeps_and_respects_chunk_size(tmp_path: Path) -> None:
    f = write_2018_csv(tmp_path / "XBTUSD_f.csv", [(float(t), 1.0) for t in range(25)])

    def no_sleep(seconds: float) -> None:
        raise AssertionError("full speed must not sleep")

    source = FileReplaySource(files=[f], chunk_size=10, sleep=no_sleep)
    assert [b.num_rows for b in source.batches()] == [10, 10, 5]


def test_registry_builds_a_file_source_by_name(tmp_path: Path) -> None:
    f = write_2018_csv(tmp_path / "XBTUSD_r.csv", [(1.0, 1.0)])
    source = create_source("file", files=[f])
    assert isinstance(source, FileReplaySource) and source.name == "file"


def test_files_are_read_from_fsspec_urls_too(tmp_path: Path) -> None:
    local = write_2018_csv(tmp_path / "XBTUSD_remote.csv", [(5.0, 1.0), (6.0, 2.0)])
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/XBTUSD_remote.csv", local.read_bytes())
    table = pa.table({"pair": ["ETH/USD"], "price": [2.0], "volume": [0.5], "side": ["sell"],
                      "order_type": ["market"], "trade_id": [7], "timestamp_ms": [5_500]})
    with fs.open("/bucket/eth.parquet", "wb") as f:
        pq.write_table(table, f)
    urls = ["memory://bucket/XBTUSD_remote.csv", "memory://bucket/eth.parquet"]
    got = pa.concat_tables(FileReplaySource(files=urls).batches())
    assert got["pair"].to_pylist() == ["XBT/USD", "ETH/USD", "XBT/USD"]

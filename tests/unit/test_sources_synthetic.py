"""Synthetic generator: determinism, realistic statistics, ids, bounded disorder and lateness."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.schemas.trade import TRADE_ARROW_SCHEMA
from streaming.sources.synthetic import DEFAULT_PAIRS, SyntheticTradeSource


def generate(**options: object) -> pa.Table:
    tables = list(SyntheticTradeSource(**options).batches())  # type: ignore[arg-type]
    assert all(t.schema == TRADE_ARROW_SCHEMA and t.num_rows for t in tables)
    return pa.concat_tables(tables)


def test_same_seed_gives_the_same_trades_and_another_seed_different_ones() -> None:
    a = generate(count=20_000, seed=42, chunk_size=7_000)
    b = generate(count=20_000, seed=42, chunk_size=7_000)
    c = generate(count=20_000, seed=43, chunk_size=7_000)
    assert a.equals(b)
    assert not a.equals(c)


def test_a_million_trades_in_chunks_with_unique_increasing_ids_per_pair() -> None:
    source = SyntheticTradeSource(count=1_000_000, seed=1, chunk_size=250_000)
    table = pa.concat_tables(source.batches())
    assert table.num_rows == 1_000_000
    pairs = table["pair"].to_numpy(zero_copy_only=False)
    ids = table["trade_id"].to_numpy()
    assert set(pairs) == set(DEFAULT_PAIRS)
    for pair in DEFAULT_PAIRS:
        pair_ids = ids[pairs == pair]
        assert pair_ids[0] == 1 and np.all(np.diff(pair_ids) == 1)


def test_statistics_look_like_a_market() -> None:
    volatility = 3e-4
    table = generate(count=200_000, seed=3, volatility=volatility, market_fraction=0.25,
                     start_ms=1_600_000_000_000)
    ts = table["timestamp_ms"].to_numpy()
    assert ts[0] >= 1_600_000_000_000 and np.all(np.diff(ts) >= 0)  # in order without disorder
    pairs = table["pair"].to_numpy(zero_copy_only=False)
    for pair, (base, size) in DEFAULT_PAIRS.items():
        mask = pairs == pair
        price = table["price"].to_numpy()[mask]
        assert np.all(price > 0)
        returns = np.diff(np.log(price))
        assert abs(np.std(returns) / volatility - 1) < 0.1  # geometric random walk
        assert 0.5 < price[0] / base < 2
        volume = table["volume"].to_numpy()[mask]
        assert 0.7 < np.median(volume) / size < 1.4  # lognormal around the typical size
    market = pc.mean(pc.equal(table["order_type"], "market").cast(pa.float64())).as_py()
    buy = pc.mean(pc.equal(table["side"], "buy").cast(pa.float64())).as_py()
    assert abs(market - 0.25) < 0.01 and abs(buy - 0.5) < 0.02
    gaps = np.diff(ts).astype(float)
    assert np.std(gaps) / np.mean(gaps) > 1.2  # bursty: more dispersed than one Poisson process


def test_out_of_order_trades_stay_within_the_bound_and_late_ones_exceed_it() -> None:
    n = 100_000
    table = generate(count=n, seed=5, out_of_order_fraction=0.05, max_disorder_ms=2_000,
                     late_fraction=0.01, late_min_ms=10_000, late_max_ms=30_000,
                     chunk_size=30_000)
    ts = table["timestamp_ms"].to_numpy()
    lag = np.maximum.accumulate(ts) - ts  # how far behind the newest event time seen so far
    late = lag > 2_000
    assert table.num_rows == n
    assert 0.004 < late.mean() < 0.012  # about late_fraction (some arrive behind other late ones)
    assert lag.max() <= 30_000
    assert 0.01 < ((lag > 0) & ~late).mean() < 0.06
    assert len(set(zip(table["pair"].to_pylist(), table["trade_id"].to_pylist(),
                       strict=True))) == n  # reordered, none lost or repeated


def test_endless_generator_stops_when_closed() -> None:
    source = SyntheticTradeSource(count=None, seed=0, chunk_size=1_000)
    seen = 0
    for batch in source.batches():
        seen += batch.num_rows
        if seen >= 5_000:
            source.close()
    assert seen == 5_000

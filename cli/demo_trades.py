"""The demo's trades: a synthetic history that ends now, then live trades stamped with the clock.

A real deployment starts from history: the demo generates `days` of seeded synthetic trades
ending at the current minute (`SyntheticTradeSource`, rates high enough that every pair trades
most minutes, so even the 662-candle indicators are warm at the end), and later a few seconds of
live trades per pair continuing each pair's last price and trade id.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from streaming.partitioning import partition_for
from streaming.runtime.clients import make_producer
from streaming.runtime.deliveries import Deliveries
from streaming.settings import KafkaSettings
from streaming.sources.synthetic import SyntheticTradeSource

DAY_MS = 86_400_000
CALM_RATE_PER_S = 1.0
BUSY_RATE_PER_S = 4.0


def history_trades(days: float, pairs: list[str], seed: int, end_ms: int) -> pa.Table:
    """Seeded synthetic trades of `pairs` over `[end_ms - days, end_ms)`, in event-time order."""
    start_ms = end_ms - int(days * DAY_MS)
    source = SyntheticTradeSource(count=None, seed=seed, pairs=pairs, start_ms=start_ms,
                                  calm_rate_per_s=CALM_RATE_PER_S,
                                  busy_rate_per_s=BUSY_RATE_PER_S)
    batches = []
    for batch in source.batches():
        batches.append(batch)
        if pc.max(batch["timestamp_ms"]).as_py() >= end_ms:
            break
    source.close()
    trades = pa.concat_tables(batches)
    return trades.filter(pc.less(trades["timestamp_ms"], end_ms))


def publish_live_trades(kafka: KafkaSettings, topic: str, partitions: int, history: pa.Table,
                        seconds: float, per_second: int = 4, seed: int = 0,
                        on_tick: Callable[[float], None] | None = None) -> int:
    """Trades of every pair of `history` stamped with the wall clock for `seconds`,
    `per_second` per pair: prices walk on from each pair's last price, trade ids go on."""
    rng = np.random.default_rng(seed)
    last = {row["pair"]: row for row in history.to_pylist()}  # rows in event-time order
    producer, deliveries = make_producer(kafka), Deliveries()
    sent, started = 0, time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        now_ms = int(time.time() * 1000)
        for pair, row in last.items():
            price = float(row["price"]) * float(np.exp(rng.normal(0.0, 2e-4)))
            trade = {"v": 1, "pair": pair, "price": price,
                     "volume": float(row["volume"]) * float(rng.lognormal(0.0, 0.5)),
                     "side": "buy" if rng.random() < 0.5 else "sell",
                     "order_type": "market" if rng.random() < 0.4 else "limit",
                     "trade_id": int(row["trade_id"]) + 1, "timestamp_ms": now_ms}
            producer.produce(topic, key=pair, value=orjson.dumps(trade),
                             partition=partition_for(pair, partitions),
                             on_delivery=deliveries.track())
            last[pair] = trade
            sent += 1
        producer.poll(0)
        if on_tick is not None:
            on_tick(elapsed)
        time.sleep(1.0 / per_second)
    if producer.flush(30) or deliveries.error is not None:
        raise RuntimeError(f"live trades were not all delivered: {deliveries.error}")
    return sent

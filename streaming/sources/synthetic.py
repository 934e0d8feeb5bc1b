"""A seeded synthetic trade generator for tests, benchmarks and demos.

Model (all vectorized with numpy, generated chunk by chunk):
- arrivals: a Poisson process whose rate switches between a calm and a busy regime (a two-state
  Markov chain, one state per block of ``regime_block`` trades), so trades come in bursts;
- each trade picks a pair with fixed weights (the first pairs trade more, like real markets);
- prices: a geometric random walk per pair (normal log-returns of ``volatility`` per trade);
- volumes: lognormal, scaled by the pair's typical size; sides follow the sign of the return
  most of the time; ``market_fraction`` of trades are market orders;
- trade ids: 1, 2, 3, ... per pair, increasing with event time;
- disorder, for tests of event-time handling: a fraction ``out_of_order_fraction`` of trades
  arrive up to ``max_disorder_ms`` after their event time (so they are out of order but within
  that bound), and a fraction ``late_fraction`` arrive between ``late_min_ms`` and
  ``late_max_ms`` after it (beyond the bound). Batches come in *arrival* order.

The same seed and options give exactly the same trades, batch boundaries included.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from features.schemas.trade import TRADE_ARROW_SCHEMA
from streaming.sources.base import TradeSource

# Realistic spot prices and typical trade sizes (base units), by pair.
DEFAULT_PAIRS: dict[str, tuple[float, float]] = {
    "XBT/USD": (60_000.0, 0.05),
    "ETH/USD": (3_000.0, 0.8),
    "SOL/USD": (150.0, 10.0),
    "XRP/USD": (0.55, 2_000.0),
    "ADA/USD": (0.45, 2_500.0),
    "DOT/USD": (7.0, 100.0),
    "LTC/USD": (80.0, 5.0),
    "XBT/EUR": (55_000.0, 0.05),
}
DEFAULT_START_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z


@dataclass
class _Pending:
    """Generated trades not yet delivered (their arrival time is after the generator's now)."""

    columns: dict[str, np.ndarray]
    arrival_us: np.ndarray


class SyntheticTradeSource(TradeSource):
    """``count`` synthetic trades (``None``: endless), yielded in chunks of ``chunk_size``."""

    name = "synthetic"

    def __init__(
        self,
        *,
        count: int | None = 1_000_000,
        seed: int = 0,
        pairs: Sequence[str] | None = None,
        start_ms: int = DEFAULT_START_MS,
        chunk_size: int = 100_000,
        calm_rate_per_s: float = 20.0,
        busy_rate_per_s: float = 400.0,
        regime_block: int = 1_000,
        volatility: float = 2e-4,
        market_fraction: float = 0.4,
        out_of_order_fraction: float = 0.0,
        max_disorder_ms: int = 2_000,
        late_fraction: float = 0.0,
        late_min_ms: int = 10_000,
        late_max_ms: int = 60_000,
    ) -> None:
        names = list(pairs) if pairs else list(DEFAULT_PAIRS)
        unknown = [p for p in names if p not in DEFAULT_PAIRS]
        if unknown:
            raise ValueError(f"no base price for {unknown}; known: {list(DEFAULT_PAIRS)}")
        if chunk_size <= 0 or (count is not None and count < 0):
            raise ValueError("chunk_size must be positive and count non-negative")
        if late_min_ms <= max_disorder_ms:
            raise ValueError("late_min_ms must exceed max_disorder_ms (late = beyond the bound)")
        self.count = count
        self.seed = seed
        self.pairs = names
        self.start_ms = start_ms
        self.chunk_size = chunk_size
        self.rates = np.array([calm_rate_per_s, busy_rate_per_s])
        self.regime_block = regime_block
        self.volatility = volatility
        self.market_fraction = market_fraction
        self.out_of_order_fraction = out_of_order_fraction
        self.max_disorder_ms = max_disorder_ms
        self.late_fraction = late_fraction
        self.late_min_ms = late_min_ms
        self.late_max_ms = late_max_ms
        self._closed = False

    def close(self) -> None:
        self._closed = True

    def batches(self) -> Iterator[pa.Table]:
        rng = np.random.default_rng(self.seed)
        n_pairs = len(self.pairs)
        weights = 1.0 / np.arange(1, n_pairs + 1)
        weights /= weights.sum()
        base = np.array([DEFAULT_PAIRS[p] for p in self.pairs])
        log_price = np.log(base[:, 0])
        size = base[:, 1]
        next_id = np.ones(n_pairs, dtype=np.int64)
        now_us = self.start_ms * 1000
        regime = 0
        pending: _Pending | None = None
        emitted = 0
        while not self._closed and (self.count is None or emitted < self.count):
            n = self.chunk_size
            if self.count is not None:
                in_flight = 0 if pending is None else len(pending.arrival_us)
                n = min(n, self.count - emitted - in_flight)
            if n > 0:
                cols, event_us, regime = self._generate(
                    rng, n, now_us, regime, weights, log_price, size, next_id
                )
                now_us = int(event_us[-1])
                arrival = event_us + self._delays_us(rng, n)
                if pending is not None:
                    cols = {k: np.concatenate([pending.columns[k], v]) for k, v in cols.items()}
                    arrival = np.concatenate([pending.arrival_us, arrival])
                order = np.argsort(arrival, kind="stable")
                cols = {k: v[order] for k, v in cols.items()}
                arrival = arrival[order]
                ready = int(np.searchsorted(arrival, now_us, side="right"))
            else:  # everything generated: flush what is still in flight
                assert pending is not None
                cols, arrival, ready = pending.columns, pending.arrival_us, len(pending.arrival_us)
            pending = _Pending({k: v[ready:] for k, v in cols.items()}, arrival[ready:])
            if not len(pending.arrival_us):
                pending = None
            if ready:
                emitted += ready
                yield _table({k: v[:ready] for k, v in cols.items()})

    def _generate(
        self,
        rng: np.random.Generator,
        n: int,
        now_us: int,
        regime: int,
        weights: np.ndarray,
        log_price: np.ndarray,
        size: np.ndarray,
        next_id: np.ndarray,
    ) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
        """``n`` trades after ``now_us``, in event order; updates prices and ids in place."""
        n_blocks = -(-n // self.regime_block)
        switches = rng.random(n_blocks) < 0.1
        regimes = np.empty(n_blocks, dtype=np.int64)
        for i in range(n_blocks):  # a few hundred steps per chunk: cheap
            if switches[i]:
                regime = 1 - regime
            regimes[i] = regime
        rate = self.rates[np.repeat(regimes, self.regime_block)[:n]]
        gaps_us = np.maximum(1, rng.exponential(1e6 / rate)).astype(np.int64)
        event_us = now_us + np.cumsum(gaps_us)

        pair_idx = rng.choice(len(weights), size=n, p=weights)
        returns = rng.normal(0.0, self.volatility, size=n)
        price = np.empty(n)
        trade_id = np.empty(n, dtype=np.int64)
        for p in range(len(weights)):
            mask = pair_idx == p
            k = int(mask.sum())
            if not k:
                continue
            path = log_price[p] + np.cumsum(returns[mask])
            price[mask] = np.exp(path)
            log_price[p] = path[-1]
            trade_id[mask] = next_id[p] + np.arange(k)
            next_id[p] += k
        volume = size[pair_idx] * rng.lognormal(0.0, 1.0, size=n)
        agrees = rng.random(n) < 0.8
        buy = np.where(agrees, returns >= 0, returns < 0)
        market = rng.random(n) < self.market_fraction
        cols = {
            "pair": np.asarray(self.pairs, dtype=object)[pair_idx],
            "price": np.round(price, 8),
            "volume": np.round(np.maximum(volume, 1e-8), 8),
            "side": np.where(buy, "buy", "sell").astype(object),
            "order_type": np.where(market, "market", "limit").astype(object),
            "trade_id": trade_id,
            "timestamp_ms": event_us // 1000,
        }
        return cols, event_us, regime

    def _delays_us(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Per trade, how long after its event time it arrives (0 for most trades)."""
        delays = np.zeros(n, dtype=np.int64)
        u = rng.random(n)
        disordered = u < self.out_of_order_fraction
        late = (u >= self.out_of_order_fraction) & (
            u < self.out_of_order_fraction + self.late_fraction
        )
        delays[disordered] = rng.integers(
            1_000, self.max_disorder_ms * 1000 + 1, size=int(disordered.sum())
        )
        delays[late] = rng.integers(
            self.late_min_ms * 1000, self.late_max_ms * 1000 + 1, size=int(late.sum())
        )
        return delays


def _table(cols: dict[str, np.ndarray]) -> pa.Table:
    return pa.table(
        {name: pa.array(cols[name], field.type) for name, field in
         zip(TRADE_ARROW_SCHEMA.names, TRADE_ARROW_SCHEMA, strict=True)},
        schema=TRADE_ARROW_SCHEMA,
    )

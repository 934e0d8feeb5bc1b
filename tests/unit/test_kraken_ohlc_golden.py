"""1-minute candles built from Kraken's own trades equal Kraken's own OHLC bars.

Truth: `http_ohlc.json` (Kraken REST OHLC, interval 1) over the same period as `http_trades.json`
(Kraken REST Trades), both from ../shared/data/kraken-rest/. The trades go through the whole
speed-layer path short of the broker: wire JSON -> decoder -> candle operator.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from features.kraken_formats import parse_rest_trade_rows
from features.windows import TumblingWindow
from tests.support.operator_harness import candle_operator, close_all, encode_trades, feed

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "kraken-rest"

pytestmark = pytest.mark.skipif(
    not (DATA / "http_trades.json").exists(), reason=f"real Kraken data not found at {DATA}"
)


def _result(name: str) -> list[list[Any]]:
    result = json.loads((DATA / name).read_text())["result"]
    (pair_key,) = [k for k in result if k != "last"]
    return result[pair_key]


def _last_place(text: str) -> float:
    """One unit in the last printed decimal place (Kraken prints VWAP at price precision)."""
    exponent = Decimal(text).as_tuple().exponent
    assert isinstance(exponent, int)  # not a NaN or infinity
    return 10.0 ** exponent


def test_one_minute_candles_equal_kraken_ohlc_bars_for_every_fully_covered_minute() -> None:
    rows = _result("http_trades.json")
    bars = _result("http_ohlc.json")
    operator = candle_operator([TumblingWindow(60_000, grace_ms=0)])
    emitted, letters, _ = feed(operator, encode_trades(parse_rest_trade_rows(rows, "XBT/USDT")))
    emitted.update(close_all(operator))
    assert letters == []
    candles: dict[int, dict[str, Any]] = {
        int(str(c["window_start_ms"])) // 1000: c for c in emitted.values()}

    first_trade_s, last_trade_s = float(rows[0][2]), float(rows[-1][2])
    # fully covered: after the minute of the first trade, before the minute of the last one
    covered = [b for b in bars
               if int(first_trade_s) // 60 * 60 < int(b[0]) < int(last_trade_s) // 60 * 60]
    traded = [b for b in covered if int(b[7]) > 0]
    assert len(traded) > 100, "the recording should cover many traded minutes"
    # minutes Kraken shows without trades are exactly the minutes we have no candle for
    assert {int(b[0]) for b in traded} == {
        t for t in candles if int(first_trade_s) // 60 * 60 < t < int(last_trade_s) // 60 * 60}
    for bar in traded:
        t, open_, high, low, close, vwap, volume, count = bar
        candle = candles[int(t)]
        for field, text in (("open", open_), ("high", high), ("low", low), ("close", close)):
            assert candle[field] == float(text), (t, field)
        # Kraken truncates VWAP to the pair's price precision (0.1 for XBT/USDT)
        assert 0 <= candle["vwap"] - float(vwap) + 1e-9 < _last_place(str(vwap)), t
        assert abs(candle["volume"] - float(volume)) <= 1e-12, t
        assert candle["trade_count"] == count, t

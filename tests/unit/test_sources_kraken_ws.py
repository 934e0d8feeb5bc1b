"""Kraken WebSocket source against a local server replaying recorded and documented frames."""

from __future__ import annotations

import calendar
import json
import random
from decimal import Decimal

import pyarrow as pa
import pytest
from support.kraken_servers import (
    HOLD,
    V2_HEARTBEAT,
    V2_STATUS,
    WS_RECORDING,
    KrakenWsServer,
    recorded_server_frames,
    v2_subscribe_ack,
    v2_trade,
    v2_trade_frame,
)

from features.schemas.trade import TRADE_ARROW_SCHEMA
from streaming.sources.kraken_ws import (
    KrakenSubscriptionError,
    KrakenWebSocketSource,
    rfc3339_to_us,
)

T0_US = 1_695_628_177_708_706  # 2023-09-25T07:49:37.708706Z


def collect(source: KrakenWebSocketSource) -> pa.Table:
    tables = list(source.batches())
    assert all(t.schema == TRADE_ARROW_SCHEMA for t in tables)
    return pa.concat_tables(tables) if tables else TRADE_ARROW_SCHEMA.empty_table()


def trades(ids: range, symbol: str = "BTC/USD") -> list[dict[str, object]]:
    return [v2_trade(symbol, i, T0_US + i * 1_000, 26_000.0 + i / 10, 0.01 * i,
                     side="buy" if i % 2 else "sell", ord_type="market" if i % 3 else "limit")
            for i in ids]


def test_rfc3339_timestamp_with_microseconds_becomes_exact_epoch_microseconds() -> None:
    expected = calendar.timegm((2023, 9, 25, 7, 49, 37)) * 1_000_000 + 708_706
    assert rfc3339_to_us("2023-09-25T07:49:37.708706Z") == expected


@pytest.mark.skipif(not WS_RECORDING.exists(), reason=f"recorded data missing: {WS_RECORDING}")
def test_v1_recording_yields_every_recorded_trade_in_arrival_order() -> None:
    # Golden values straight from the raw file, without the project's parsers.
    expected = []
    for line in WS_RECORDING.read_text().splitlines():
        if not line.strip() or line.startswith("wss://"):
            continue
        frame = json.loads(line.split(": ", 1)[1])
        if isinstance(frame, list) and frame[2] == "trade":
            for price, volume, time_s, side, _kind, _misc in frame[1]:
                ms = int(Decimal(time_s) * 1000)
                expected.append((frame[3], float(price), float(volume), side, ms))
    assert len(expected) == 10  # the data README: 10 trades

    with KrakenWsServer([recorded_server_frames()]) as server:
        source = KrakenWebSocketSource(
            url=server.url, pairs=["XMR/USD", "SC/EUR"], api_version=1, max_trades=len(expected)
        )
        got = collect(source)
    assert json.loads(server.received[0])["event"] == "subscribe"
    rows = got.to_pylist()
    got_rows = [(r["pair"], r["price"], r["volume"], r["side"][0], r["timestamp_ms"]) for r in rows]
    assert got_rows == expected
    ids = got["trade_id"].to_pylist()
    assert len(set(ids)) == len(ids)


def test_v2_snapshot_and_updates_become_batches_with_all_fields() -> None:
    script = [
        V2_STATUS,
        v2_subscribe_ack("BTC/USD"),
        v2_trade_frame("snapshot", trades(range(1, 51))),
        V2_HEARTBEAT,
        v2_trade_frame("update", trades(range(51, 54))),
        V2_HEARTBEAT,
        v2_trade_frame("update", trades(range(54, 55))),
    ]
    with KrakenWsServer([script]) as server:
        source = KrakenWebSocketSource(url=server.url, pairs=["BTC/USD"], max_trades=54)
        batches = list(source.batches())
    subscribe = json.loads(server.received[0])
    assert subscribe == {"method": "subscribe",
                         "params": {"channel": "trade", "symbol": ["BTC/USD"], "snapshot": True}}
    assert [b.num_rows for b in batches] == [50, 3, 1]
    first = batches[0].to_pylist()[0]
    assert first == {"pair": "BTC/USD", "price": 26_000.1, "volume": 0.01, "side": "buy",
                     "order_type": "market", "trade_id": 1,
                     "timestamp_ms": (T0_US + 1_000) // 1000}
    assert batches[2].to_pylist()[0]["order_type"] == "limit"  # 54 % 3 == 0


def test_reconnect_after_dropped_connection_delivers_each_trade_once() -> None:
    first = [v2_subscribe_ack("BTC/USD"), v2_trade_frame("snapshot", trades(range(1, 51))),
             v2_trade_frame("update", trades(range(51, 54)))]
    # After reconnecting, the snapshot repeats the 50 most recent trades, 4..53, then goes on.
    second = [v2_subscribe_ack("BTC/USD"), v2_trade_frame("snapshot", trades(range(4, 54))),
              V2_HEARTBEAT, v2_trade_frame("update", trades(range(54, 57)))]
    sleeps: list[float] = []
    with KrakenWsServer([first, second]) as server:
        source = KrakenWebSocketSource(url=server.url, pairs=["BTC/USD"], max_trades=56,
                                       sleep=sleeps.append, rng=random.Random(7))
        got = collect(source)
    assert got["trade_id"].to_pylist() == list(range(1, 57))
    assert server.connections == 2 and source.connections == 2
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= source.backoff_initial_s


def test_backoff_grows_exponentially_with_jitter_and_gives_up_after_max_attempts() -> None:
    with KrakenWsServer([]) as server:
        url = server.url
    sleeps: list[float] = []
    source = KrakenWebSocketSource(url=url, pairs=["BTC/USD"], max_attempts=5, open_timeout_s=1,
                                   backoff_initial_s=1.0, backoff_max_s=4.0,
                                   sleep=sleeps.append, rng=random.Random(1))
    with pytest.raises(ConnectionError):
        list(source.batches())
    assert len(sleeps) == 4
    for attempt, delay in enumerate(sleeps, start=1):
        assert 0 <= delay <= min(4.0, 2 ** (attempt - 1))
    assert len(set(sleeps)) == 4  # jittered, not a fixed schedule


def test_subscription_rejected_for_every_pair_raises() -> None:
    script = [v2_subscribe_ack("NOPE/USD", success=False, error="Currency pair not supported")]
    with KrakenWsServer([script]) as server:
        source = KrakenWebSocketSource(url=server.url, pairs=["NOPE/USD"])
        with pytest.raises(KrakenSubscriptionError, match="not supported"):
            list(source.batches())


def test_silence_beyond_idle_timeout_reconnects() -> None:
    silent = [v2_subscribe_ack("BTC/USD"), HOLD]  # no heartbeat: the connection is dead
    alive = [v2_subscribe_ack("BTC/USD"), v2_trade_frame("update", trades(range(1, 3)))]
    with KrakenWsServer([silent, alive]) as server:
        source = KrakenWebSocketSource(url=server.url, pairs=["BTC/USD"], max_trades=2,
                                       idle_timeout_s=0.3, sleep=lambda s: None)
        got = collect(source)
    assert got["trade_id"].to_pylist() == [1, 2]
    assert server.connections == 2


HOSTILE_FRAMES = ["not json", '{"channel": "trade", "type": "update", "data": 5}']


def test_hostile_frames_and_broken_trades_are_rejected_alone_and_the_stream_goes_on() -> None:
    """A frame that is not JSON, a trade frame whose data is not a list, and broken trades
    among good ones (missing field, price not a number, id not an integer, bad timestamp, a
    trade that is not an object; a v1 row too short): each is rejected with its reason for the
    service's dead-letter topic; the good trades of the same frames arrive; one connection."""
    good = trades(range(1, 4))
    broken = [
        {k: v for k, v in good[0].items() if k != "qty"},
        {**good[0], "price": "abc"},
        {**good[0], "trade_id": "7"},
        {**good[0], "timestamp": "yesterday"},
        [1, 2, 3],
    ]
    mixed = [good[0], broken[0], broken[1], good[1], broken[2], broken[3], broken[4], good[2]]
    v1 = json.dumps([42, [["26001.5", "0.5", "1695628178.000001", "b", "l", ""], ["1.0"]],
                     "trade", "XBT/USD"])
    script = [v2_subscribe_ack("BTC/USD"), *HOSTILE_FRAMES,
              v2_trade_frame("update", mixed), "\xff not json either", v1,
              v2_trade_frame("update", trades(range(4, 5)))]
    with KrakenWsServer([script]) as server:
        source = KrakenWebSocketSource(url=server.url, pairs=["BTC/USD", "XBT/USD"],
                                       max_trades=5)
        got = collect(source)
    assert got["trade_id"].to_pylist()[:3] == [1, 2, 3]
    assert got["pair"].to_pylist()[3] == "XBT/USD" and got["trade_id"][4].as_py() == 4
    assert source.connections == 1
    rejects = source.take_rejects()
    reasons = [r.reason for r in rejects]
    assert reasons[0].startswith("frame: not JSON")
    assert reasons[1] == "frame: data is not a list"
    assert reasons[2] == "frame: unreadable trade (missing 'qty')"
    assert reasons[3].startswith("frame: unreadable trade (ValueError")
    assert reasons[4] == "frame: unreadable trade (TypeError: '7' is not an integer)"
    assert reasons[5].startswith("frame: unreadable trade (ValueError")
    assert reasons[6].startswith("frame: unreadable trade (TypeError")
    assert reasons[7].startswith("frame: not JSON")
    assert reasons[8].startswith("frame: unreadable trade (IndexError")
    assert len(rejects) == 9
    assert json.loads(rejects[3].raw)["price"] == "abc"  # the broken trade as received
    assert rejects[0].raw == "not json"
    assert source.take_rejects() == []  # taken once

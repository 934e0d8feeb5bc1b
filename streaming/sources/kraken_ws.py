"""Live trades from Kraken's WebSocket API (v2 ``trade`` channel; v1 array frames also parsed).

One connection subscribes to the configured pairs. Each trade frame (a v2 ``snapshot`` or
``update`` carrying several trades, or a v1 array frame) becomes one Arrow batch. Heartbeats,
status messages and subscribe acks are consumed; a rejected subscription is logged, and if every
pair is rejected the source raises :class:`KrakenSubscriptionError`.

Reconnects: a dropped connection, or silence longer than ``idle_timeout_s`` (Kraken sends a
heartbeat every second), reconnects with exponential backoff and full jitter. The last trade id
delivered per pair is remembered, so the snapshot that v2 sends after a (re)subscribe, which
repeats recent trades, delivers only trades newer than those already delivered: no duplicates.

v1 frames carry no trade id; one is derived like :mod:`features.trade_ids` does for files
(``timestamp_us * 1000 + rank among trades of the pair with that microsecond``, counting across
frames), so a live v1 stream and a file of the same trades get the same ids.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import structlog
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from features.schemas.trade import TRADE_ARROW_SCHEMA
from features.trade_ids import MAX_TRADES_PER_MICROSECOND, seconds_to_microseconds
from streaming.sources.base import SourceReject, TradeSource

log = structlog.get_logger(__name__)

KRAKEN_WS_V2_URL = "wss://ws.kraken.com/v2"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_V1_SIDE = {"b": "buy", "s": "sell"}
_V1_ORDER_TYPE = {"m": "market", "l": "limit"}

# One trade as parsed from a frame: pair, price, volume, side, order type, id (None: derive), µs.
ParsedTrade = tuple[str, float, float, str, str, int | None, int]


class KrakenSubscriptionError(RuntimeError):
    """Kraken rejected the subscription of every configured pair."""


def rfc3339_to_us(value: str) -> int:
    """``2023-09-25T07:49:37.708706Z`` -> epoch microseconds (exact integer arithmetic)."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# what a broken trade of a frame raises while being read (a missing field, a wrong type)
_BROKEN = (KeyError, IndexError, TypeError, ValueError, ArithmeticError)


def _text(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=str).decode()


def parse_v2_trades(message: dict[str, Any]) -> tuple[list[ParsedTrade], list[SourceReject]]:
    """The trades of a v2 ``{"channel": "trade", "type": "snapshot"|"update", "data": [...]}``,
    and those it holds that cannot be read (each rejected alone: the others go on)."""
    trades: list[ParsedTrade] = []
    rejects: list[SourceReject] = []
    data = message.get("data", [])
    if not isinstance(data, list):
        return [], [SourceReject("frame: data is not a list", _text(message))]
    for t in data:
        try:
            trades.append((
                _string(t["symbol"]),
                float(t["price"]),
                float(t["qty"]),
                _string(t["side"]),
                _string(t["ord_type"]),
                _integer(t["trade_id"]),
                rfc3339_to_us(_string(t["timestamp"])),
            ))
        except _BROKEN as error:
            rejects.append(SourceReject(f"frame: unreadable trade ({_why(error)})", _text(t)))
    return trades, rejects


def parse_v1_trades(message: list[Any]) -> tuple[list[ParsedTrade], list[SourceReject]]:
    """The trades of a v1 ``[channelID, [[price, volume, time, side, type, misc], ...], "trade",
    pair]`` frame; ids are left for the caller to derive (they depend on earlier frames). Rows
    that cannot be read are rejected alone."""
    pair = str(message[-1])
    trades: list[ParsedTrade] = []
    rejects: list[SourceReject] = []
    for row in message[1]:
        try:
            micros = int(seconds_to_microseconds(float(row[2])))  # type: ignore[arg-type]
            trades.append((
                pair,
                float(row[0]),
                float(row[1]),
                _V1_SIDE.get(str(row[3]), str(row[3])),
                _V1_ORDER_TYPE.get(str(row[4]), str(row[4])),
                None,
                micros,
            ))
        except _BROKEN as error:
            rejects.append(SourceReject(f"frame: unreadable trade ({_why(error)})",
                                        _text([*message[:1], row, *message[2:]])))
    return trades, rejects


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _integer(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _why(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"missing {error}"
    return f"{type(error).__name__}: {error}"[:200]


def is_v1_trade_frame(message: object) -> bool:
    return (
        isinstance(message, list)
        and len(message) >= 4
        and message[-2] == "trade"
        and isinstance(message[1], list)
    )


class TradeDeduplicator:
    """Per pair, keeps only trades with an id above the last one delivered; derives v1 ids."""

    def __init__(self) -> None:
        self.last_id: dict[str, int] = {}
        self._v1_clock: dict[str, tuple[int, int]] = {}  # pair -> (last µs, rank at that µs)

    def accept(self, trades: Sequence[ParsedTrade]) -> list[ParsedTrade]:
        fresh: list[ParsedTrade] = []
        for pair, price, volume, side, order_type, trade_id, micros in trades:
            if trade_id is None:
                trade_id = self._derive(pair, micros)
            last = self.last_id.get(pair)
            if last is not None and trade_id <= last:
                continue
            self.last_id[pair] = trade_id
            fresh.append((pair, price, volume, side, order_type, trade_id, micros))
        return fresh

    def _derive(self, pair: str, micros: int) -> int:
        last_us, rank = self._v1_clock.get(pair, (-1, -1))
        rank = rank + 1 if micros == last_us else 0
        if rank >= MAX_TRADES_PER_MICROSECOND:
            raise ValueError(f"more than 1000 {pair} trades share one microsecond")
        self._v1_clock[pair] = (micros, rank)
        return micros * MAX_TRADES_PER_MICROSECOND + rank


def trades_to_table(trades: Sequence[ParsedTrade]) -> pa.Table:
    """Parsed trades (ids filled in) as an Arrow table in the trade schema."""
    names = ("pair", "price", "volume", "side", "order_type", "trade_id", "micros")
    columns: dict[str, list[Any]] = {name: [t[i] for t in trades] for i, name in enumerate(names)}
    columns["timestamp_ms"] = [m // 1000 for m in columns.pop("micros")]  # floor, as files do
    return pa.table(columns, schema=TRADE_ARROW_SCHEMA)


class KrakenWebSocketSource(TradeSource):
    """Trades of ``pairs`` from a Kraken WebSocket endpoint, one batch per trade frame.

    ``api_version`` picks the subscribe message (2: ``{"method": "subscribe", ...}``, 1:
    ``{"event": "subscribe", ...}``); frames of either version are parsed whatever it is.
    ``max_trades`` ends the stream after that many trades; ``max_attempts`` gives up (raises
    ``ConnectionError``) after that many consecutive failed connections (``None``: never).
    """

    name = "kraken-ws"

    def __init__(
        self,
        *,
        pairs: Sequence[str] = ("BTC/USD", "ETH/USD"),
        url: str = KRAKEN_WS_V2_URL,
        api_version: int = 2,
        snapshot: bool = True,
        idle_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_attempts: int | None = None,
        max_trades: int | None = None,
        open_timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if api_version not in (1, 2):
            raise ValueError("api_version must be 1 or 2")
        if not pairs:
            raise ValueError("at least one pair is needed")
        self.pairs = list(pairs)
        self.url = url
        self.api_version = api_version
        self.snapshot = snapshot
        self.idle_timeout_s = idle_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self.max_trades = max_trades
        self.open_timeout_s = open_timeout_s
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.dedup = TradeDeduplicator()
        self.connections = 0  # successful connections so far (reconnects = connections - 1)
        self._rejected: set[str] = set()
        self._rejects: list[SourceReject] = []
        self._closed = False
        self._ws: ClientConnection | None = None

    def close(self) -> None:
        self._closed = True
        ws = self._ws
        if ws is not None:
            ws.close()

    def subscribe_message(self) -> str:
        """The subscribe request, a text frame as Kraken expects."""
        if self.api_version == 2:
            params = {"channel": "trade", "symbol": self.pairs, "snapshot": self.snapshot}
            return orjson.dumps({"method": "subscribe", "params": params}).decode()
        return orjson.dumps(
            {"event": "subscribe", "pair": self.pairs, "subscription": {"name": "trade"}}
        ).decode()

    def backoff_s(self, attempt: int) -> float:
        """Full-jitter exponential backoff before reconnect attempt ``attempt`` (1-based)."""
        cap = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1))
        return self.rng.uniform(0.0, cap)

    def batches(self) -> Iterator[pa.Table]:
        delivered = 0
        failures = 0
        while not self._closed:
            if failures:
                if self.max_attempts is not None and failures >= self.max_attempts:
                    raise ConnectionError(f"{self.url}: {failures} connection attempts failed")
                delay = self.backoff_s(failures)
                log.info("reconnecting", url=self.url, attempt=failures, delay_s=round(delay, 3))
                self.sleep(delay)
            try:
                ws = connect(self.url, open_timeout=self.open_timeout_s, close_timeout=1)
                self._ws = ws
                with ws:
                    self.connections += 1
                    ws.send(self.subscribe_message())
                    log.info("subscribed", url=self.url, pairs=self.pairs, v=self.api_version)
                    while not self._closed:
                        try:
                            raw = ws.recv(timeout=self.idle_timeout_s)
                        except TimeoutError:
                            log.warning("no frame in time; reconnecting", s=self.idle_timeout_s)
                            break
                        failures = 0  # the connection works
                        table = self._handle(raw)
                        if table is None:
                            continue
                        if self.max_trades is not None:
                            table = table.slice(0, self.max_trades - delivered)
                        delivered += table.num_rows
                        yield table
                        if self.max_trades is not None and delivered >= self.max_trades:
                            return
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
                if self._closed:
                    break
                log.warning("connection lost", url=self.url, error=repr(exc))
            finally:
                self._ws = None
            failures += 1

    def take_rejects(self) -> list[SourceReject]:
        rejects, self._rejects = self._rejects, []
        return rejects

    def _handle(self, raw: str | bytes) -> pa.Table | None:
        """A trade frame as a batch of new trades; ``None`` for anything else (or no new trade).
        A frame that is not JSON, and each trade of a frame that cannot be read, is kept for
        :meth:`take_rejects` (the trades service dead-letters it) and the stream goes on."""
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            self._reject_input(SourceReject(f"frame: not JSON ({error.msg})", text))
            return None
        if isinstance(message, dict):
            self._control(message)
            if message.get("channel") != "trade":
                return None
            trades, rejects = parse_v2_trades(message)
        elif is_v1_trade_frame(message):
            trades, rejects = parse_v1_trades(message)
        else:
            log.debug("ignored frame", frame=message)
            return None
        for reject in rejects:
            self._reject_input(reject)
        fresh = self.dedup.accept(trades)
        if len(fresh) < len(trades):
            log.info("dropped repeated trades", repeated=len(trades) - len(fresh))
        return trades_to_table(fresh) if fresh else None

    def _reject_input(self, reject: SourceReject) -> None:
        log.warning("unreadable input", reason=reject.reason, raw=reject.raw[:200])
        self._rejects.append(reject)

    def _control(self, message: dict[str, Any]) -> None:
        """Acks, errors and status messages of both API versions."""
        if message.get("method") == "subscribe" and not message.get("success", True):
            self._reject(str(message.get("symbol", "?")), str(message.get("error")))
        elif message.get("event") == "subscriptionStatus" and message.get("status") == "error":
            self._reject(str(message.get("pair", "?")), str(message.get("errorMessage")))
        elif message.get("event") == "error" or ("error" in message and "method" not in message):
            log.error("kraken error", message=message)
        elif message.get("method") == "subscribe" or message.get("event") == "subscriptionStatus":
            log.debug("subscription ack", message=message)

    def _reject(self, pair: str, error: str) -> None:
        log.error("subscription rejected", pair=pair, error=error)
        self._rejected.add(pair)
        if len(self._rejected) >= len(self.pairs):
            raise KrakenSubscriptionError(f"every pair was rejected; last error: {error}")

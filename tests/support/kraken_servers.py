"""Local stand-ins for Kraken's WebSocket and REST endpoints, on 127.0.0.1 with a free port.

- :class:`KrakenWsServer` plays scripted frames (recorded v1 frames, documented v2 frames) to
  each connection after it subscribes, and can drop the connection abruptly mid-stream.
- :class:`KrakenRestServer` serves ``/0/public/Trades`` pages cut from a real response, with
  the ``since``/``last`` cursor in nanoseconds, optional 6-field rows and a one-off rate-limit
  error.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

DATA = Path(
    os.environ.get("BRAID_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)
WS_RECORDING = DATA / "kraken-ws" / "KRAKEN.ws.48.0"
REST_TRADES = DATA / "kraken-rest" / "http_trades.json"


_SERVER_LINE = re.compile(r"^\d+(?:\.\d+)?: (.*)$", re.MULTILINE)


def recorded_server_frames(path: Path = WS_RECORDING) -> list[str]:
    """The frames the server sent in a cryptofeed recording (``<time>: <frame>`` lines)."""
    # Client-sent lines read `wss://host <- <time>: <frame>`; the connection line `wss://host <->`.
    return [m.group(1) for m in _SERVER_LINE.finditer(path.read_text())]


# ---------------------------------------------------------------- v2 frames (documented format)


def v2_timestamp(epoch_us: int) -> str:
    """RFC3339 with microseconds, as Kraken v2 writes it: ``2023-09-25T07:49:37.708706Z``."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=epoch_us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def v2_trade(symbol: str, trade_id: int, epoch_us: int, price: float, qty: float,
             side: str = "buy", ord_type: str = "limit") -> dict[str, Any]:
    return {"symbol": symbol, "side": side, "price": price, "qty": qty, "ord_type": ord_type,
            "trade_id": trade_id, "timestamp": v2_timestamp(epoch_us)}


def v2_trade_frame(kind: str, trades: Sequence[dict[str, Any]]) -> str:
    return json.dumps({"channel": "trade", "type": kind, "data": list(trades)})


def v2_subscribe_ack(symbol: str, success: bool = True, error: str = "") -> str:
    if success:
        return json.dumps({"method": "subscribe", "result": {"channel": "trade", "snapshot": True,
                           "symbol": symbol}, "success": True,
                           "time_in": "2023-09-25T09:04:31.742599Z",
                           "time_out": "2023-09-25T09:04:31.742648Z"})
    return json.dumps({"error": error, "method": "subscribe", "success": False, "symbol": symbol,
                       "time_in": "2023-09-25T09:04:31.742599Z",
                       "time_out": "2023-09-25T09:04:31.742648Z"})


V2_HEARTBEAT = json.dumps({"channel": "heartbeat"})
V2_STATUS = json.dumps({"channel": "status", "type": "update", "data": [
    {"version": "2.0.0", "system": "online", "api_version": "v2",
     "connection_id": 12393906104898154338}]})


# ---------------------------------------------------------------- WebSocket server


HOLD = "<hold the connection silently>"
WAIT = "<wait until the test says go>"


class KrakenWsServer:
    """Connection ``i`` gets ``scripts[i]`` after its first (subscribe) message.

    Every script but the last ends with an abrupt TCP drop (no close frame), as a lost
    connection would; after the last script the connection stays open until the client leaves.
    Connections beyond the scripts get nothing and stay open. A :data:`HOLD` entry makes the
    server go silent (no heartbeats) and keep the connection until the client closes it; a
    :data:`WAIT` entry sends nothing but heartbeats until the test calls :meth:`go` (no trades
    for as long as the test needs, without the client timing the connection out).
    """

    def __init__(self, scripts: Sequence[Sequence[str]]) -> None:
        self.scripts = [list(s) for s in scripts]
        self.received: list[str] = []
        self.connections = 0
        self._go = threading.Event()
        self._lock = threading.Lock()
        self._server: Server = serve(self._handle, "127.0.0.1", 0, compression=None)
        self.port: int = self._server.socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/v2"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> KrakenWsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._go.set()
        self._server.shutdown()
        self._thread.join(timeout=5)

    def go(self) -> None:
        """End every :data:`WAIT` (now and later)."""
        self._go.set()

    def _record(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            raise AssertionError(f"client sent a binary frame: {message!r}; Kraken expects text")
        self.received.append(message)

    def _handle(self, conn: ServerConnection) -> None:
        with self._lock:
            index = self.connections
            self.connections += 1
        try:
            self._record(conn.recv(timeout=5))
            script = self.scripts[index] if index < len(self.scripts) else []
            for frame in script:
                if frame == HOLD:
                    self._drain(conn)
                    return
                if frame == WAIT:
                    while not self._go.wait(0.5):
                        conn.send(V2_HEARTBEAT)
                    continue
                conn.send(frame)
            if index < len(self.scripts) - 1:
                conn.socket.shutdown(socket.SHUT_RDWR)  # a lost connection, not a clean close
                return
            self._drain(conn)
        except (ConnectionClosed, TimeoutError, OSError):
            return

    def _drain(self, conn: ServerConnection) -> None:
        """Say nothing; record what the client sends until it leaves."""
        try:
            while True:
                self._record(conn.recv())
        except (ConnectionClosed, OSError):
            return


# ---------------------------------------------------------------- REST server


def rest_rows(path: Path = REST_TRADES) -> tuple[str, list[list[Any]]]:
    """The result key and rows of a recorded ``Trades`` response."""
    result = json.loads(path.read_text())["result"]
    key = next(k for k in result if k != "last")
    return key, result[key]


def row_time_ns(row: Sequence[Any]) -> int:
    return int(Decimal(str(row[2])) * 1_000_000_000)


@dataclass
class RestState:
    requests: list[dict[str, str]] = field(default_factory=list)
    rate_limited: int = 0


class KrakenRestServer:
    """``GET /0/public/Trades?pair=..&since=<ns>``: up to ``page_size`` rows from ``since`` on.

    ``last`` is the last served row's time in ns (a string, as Kraken sends it; past the end, the
    ``since`` asked for). ``six_field`` strips the trade id (older responses); ``rate_limit_at``
    answers the request of that index (0-based) with ``EGeneral:Too many requests`` once;
    ``rate_limit_every`` answers every n-th request (the 2nd, 4th, ... for n=2) so.
    Trades *at* ``since`` are served again (a time cursor cannot split trades sharing a
    timestamp otherwise; the recorded data has 182 such timestamps), so pages overlap.
    """

    def __init__(self, rows: Sequence[Sequence[Any]], *, result_key: str = "XBTUSDT",
                 page_size: int = 250, six_field: bool = False,
                 rate_limit_at: int | None = None,
                 rate_limit_error: str = "EGeneral:Too many requests",
                 rate_limit_every: int | None = None) -> None:
        self.rows = [list(r[:6]) if six_field else list(r) for r in rows]
        self.result_key = result_key
        self.page_size = page_size
        self.rate_limit_at = rate_limit_at
        self.rate_limit_every = rate_limit_every
        self.rate_limit_error = rate_limit_error
        self.state = RestState()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                body = server.respond(url.path, query)
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def respond(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        index = len(self.state.requests)
        self.state.requests.append(query)
        if path != "/0/public/Trades":
            return {"error": ["EGeneral:Unknown method"]}
        if index == self.rate_limit_at or (
                self.rate_limit_every and (index + 1) % self.rate_limit_every == 0):
            self.state.rate_limited += 1
            return {"error": [self.rate_limit_error]}
        since = int(query.get("since", "0"))
        page = [r for r in self.rows if row_time_ns(r) >= since][: self.page_size]
        last = row_time_ns(page[-1]) if page else since
        return {"error": [], "result": {self.result_key: page, "last": str(last)}}

    def __enter__(self) -> KrakenRestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

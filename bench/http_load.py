"""A paced HTTP load for the benchmarks: one keep-alive connection, requests at a fixed rate.

A client that keeps a connection alive must expect the server to close it while idle (an idle
timeout, a worker that restarts): the next request written to that connection then fails before
any byte of a response comes back (`RemoteDisconnected`, a reset, a broken pipe). HTTP clients
send such a request again on a fresh connection (RFC 9110, 9.2.2; urllib3 and browsers do, for
the idempotent requests the benchmarks send: feature reads and predictions change nothing), so
this one does too, once, and counts it as `reopened`. Any other error, or the same error on a
fresh connection, is a failure: counted, with the first one's text.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Request = tuple[str, str, bytes | None, dict[str, str]]
"""(method, path, body, headers)."""


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    first_failure: str = ""
    reopened: int = 0  # requests sent again on a fresh connection (the old one was closed)
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + self.failures

    @property
    def achieved_rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
          ConnectionAbortedError)


class KeepAliveClient:
    """One connection to `host:port`, reopened when the server has closed it."""

    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._connection: http.client.HTTPConnection | None = None
        self._used = False  # whether the current connection has carried a request already

    def _open(self) -> http.client.HTTPConnection:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.host, self.port,
                                                          timeout=self.timeout_s)
            self._used = False
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def send(self, request: Request) -> tuple[int, bytes, bool]:
        """(status, body, reopened): the request, sent again once on a fresh connection when
        a reused one turned out closed by the server."""
        method, path, body, headers = request
        for attempt in (0, 1):
            connection = self._open()
            reused = self._used
            try:
                connection.request(method, path, body=body, headers=headers)
                self._used = True
                response = connection.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data, attempt == 1
            except _STALE:
                self.close()
                if not reused or attempt == 1:
                    raise
        raise AssertionError("unreachable")


def paced_load(host: str, port: int, rate: float, count: int,
               request: Callable[[int], Request], timeout_s: float = 10.0) -> LoadResult:
    """`count` requests at `rate` per second (request k is due at k / rate; a late one goes at
    once), each timed from send to the last byte of its response."""
    client = KeepAliveClient(host, port, timeout_s)
    result = LoadResult()
    interval = 1 / rate
    start = time.perf_counter()
    try:
        for k in range(count):
            pause = start + k * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            sent = time.perf_counter()
            try:
                status, _, reopened = client.send(request(k))
            except (OSError, http.client.HTTPException) as error:  # counted, shown, not fatal
                result.failures += 1
                if not result.first_failure:
                    result.first_failure = f"request {k}: {type(error).__name__}: {error}"[:300]
                client.close()
                continue
            result.latencies_ms.append((time.perf_counter() - sent) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.reopened += reopened
    finally:
        client.close()
        result.seconds = time.perf_counter() - start
    return result

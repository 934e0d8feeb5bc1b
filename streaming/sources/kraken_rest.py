"""Historical trades from Kraken's REST ``/0/public/Trades`` endpoint, page by page.

Paging: each request asks for trades ``since`` a nanosecond cursor; the response's
``result.last`` is the next cursor. Paging stops at ``until_ns`` (trades at or after it are not
delivered) or, without an end, when a page brings nothing new (caught up).

Rate limits: requests are spaced at least ``min_interval_s`` apart (Kraken's public limit is
about one per second). ``EGeneral:Too many requests``, ``EAPI:Rate limit exceeded``, HTTP 429/5xx
and connection errors are retried with exponential backoff, up to ``max_retries`` in a row.

Resuming: with a ``state_file``, the cursor (and the dedupe state) is saved after each page has
been handed on, i.e. when the consumer asks for the next batch; a restart continues from there.
A page may be delivered twice after a crash (at-least-once); ids make that harmless downstream.

De-duplication: Kraken pages overlap at their edges; with 7-field rows a trade is new only if its
``trade_id`` is above the last delivered one. Older 6-field rows have no id: a repeated row is
recognised by its content among the previous page's trades of the same last microsecond, and ids
are derived as in :mod:`features.trade_ids`, with the rank carried across pages.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import requests
import structlog

from features.kraken_formats import parse_rest_trade_rows
from features.trade_ids import MAX_TRADES_PER_MICROSECOND
from streaming.sources.base import TradeSource

log = structlog.get_logger(__name__)

KRAKEN_REST_URL = "https://api.kraken.com"
RATE_LIMIT_ERRORS = ("EGeneral:Too many requests", "EAPI:Rate limit exceeded")


class KrakenApiError(RuntimeError):
    """Kraken answered with an error that retrying will not fix."""


@dataclass
class PagerState:
    """Where the pager is; saved to ``state_file`` as JSON after each delivered page."""

    pair: str
    since_ns: int
    last_trade_id: int | None = None
    # 6-field rows only: the last page's rows at its last microsecond, and that microsecond's rank.
    tail_rows: list[list[Any]] = field(default_factory=list)
    tail_us: int = -1
    tail_rank: int = -1

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)  # atomic: a crash leaves the old or the new state, never half

    @classmethod
    def load(cls, path: Path) -> PagerState:
        return cls(**json.loads(path.read_text()))


def row_time_ns(row: Sequence[Any]) -> int:
    """A row's time (float seconds as Kraken prints them) in integer nanoseconds, exactly."""
    return int(Decimal(str(row[2])) * 1_000_000_000)


class KrakenRestSource(TradeSource):
    """Trades of one ``pair`` (``XBT/USDT``; the query drops the slash) from ``since_ns``."""

    name = "kraken-rest"

    def __init__(
        self,
        *,
        pair: str = "XBT/USD",
        since_ns: int = 0,
        until_ns: int | None = None,
        base_url: str = KRAKEN_REST_URL,
        state_file: str | Path | None = None,
        min_interval_s: float = 1.0,
        backoff_initial_s: float = 2.0,
        backoff_max_s: float = 60.0,
        max_retries: int = 8,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        self.pair = pair
        self.query_pair = pair.replace("/", "")
        self.until_ns = until_ns
        self.url = base_url.rstrip("/") + "/0/public/Trades"
        self.state_file = Path(state_file) if state_file else None
        self.min_interval_s = min_interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.clock = clock
        self.sleep = sleep
        self.session = session or requests.Session()
        self.requests = 0
        self._last_request: float | None = None
        self._closed = False
        self.state = PagerState(pair=pair, since_ns=since_ns)
        if self.state_file is not None and self.state_file.exists():
            saved = PagerState.load(self.state_file)
            if saved.pair != pair:
                raise ValueError(f"{self.state_file} is for {saved.pair}, not {pair}")
            self.state = saved
            log.info("resuming", pair=pair, since_ns=saved.since_ns, state=str(self.state_file))

    def close(self) -> None:
        self._closed = True

    def batches(self) -> Iterator[pa.Table]:
        while not self._closed:
            rows, last = self._fetch(self.state.since_ns)
            done = False
            if self.until_ns is not None:
                before = [r for r in rows if row_time_ns(r) < self.until_ns]
                done = len(before) < len(rows) or last >= self.until_ns
                rows = before
            table = self._new_trades(rows)
            advanced = last > self.state.since_ns
            self.state.since_ns = max(self.state.since_ns, last)
            if table.num_rows:
                yield table
            self._save()  # the consumer has taken the page: move the saved cursor on
            if done or not advanced or (not rows and self.until_ns is None):
                log.info("paging done", pair=self.pair, since_ns=self.state.since_ns,
                         requests=self.requests)
                return

    def _new_trades(self, rows: list[list[Any]]) -> pa.Table:
        """The page's trades not delivered before, with ids; updates the dedupe state."""
        if not rows:
            return parse_rest_trade_rows([], self.pair)
        if len(rows[0]) == 7:
            last_id = self.state.last_trade_id
            if last_id is not None:
                rows = [r for r in rows if int(r[6]) > last_id]
            table = parse_rest_trade_rows(rows, self.pair)
            if table.num_rows:
                self.state.last_trade_id = int(np.max(table["trade_id"].to_numpy()))
            return table
        return self._new_six_field_trades(rows)

    def _new_six_field_trades(self, rows: list[list[Any]]) -> pa.Table:
        seen = {json.dumps(r) for r in self.state.tail_rows}
        rows = [r for r in rows if json.dumps(r) not in seen]
        table = parse_rest_trade_rows(rows, self.pair)
        if not table.num_rows:
            return table
        ids = table["trade_id"].to_numpy().copy()
        micros = ids // MAX_TRADES_PER_MICROSECOND
        ids[micros == self.state.tail_us] += self.state.tail_rank + 1
        last_us = int(micros[-1])
        at_last = micros == last_us
        rank = int(ids[at_last].max()) - last_us * MAX_TRADES_PER_MICROSECOND
        if rank >= MAX_TRADES_PER_MICROSECOND:
            raise ValueError("more than 1000 trades share one microsecond; cannot derive ids")
        self.state.tail_rows = [r for r, last in zip(rows, at_last, strict=True) if last]
        self.state.tail_us, self.state.tail_rank = last_us, rank
        return table.set_column(
            table.schema.get_field_index("trade_id"), "trade_id", pa.array(ids, pa.int64())
        )

    def _fetch(self, since_ns: int) -> tuple[list[list[Any]], int]:
        """One page: its rows and the next cursor; retries rate limits and transient errors."""
        failures = 0
        while True:
            self._pace()
            self.requests += 1
            try:
                response = self.session.get(
                    self.url, params={"pair": self.query_pair, "since": str(since_ns)},
                    timeout=self.timeout_s,
                )
                if response.status_code == 429 or response.status_code >= 500:
                    raise _Retry(f"HTTP {response.status_code}")
                response.raise_for_status()
                body = response.json()
                errors = [str(e) for e in body.get("error", [])]
                if any(e.startswith(RATE_LIMIT_ERRORS) for e in errors):
                    raise _Retry(", ".join(errors))
                if errors:
                    raise KrakenApiError(f"{self.url} pair={self.query_pair}: {errors}")
                result = body["result"]
                key = next((k for k in result if k != "last"), None)
                rows = result[key] if key is not None else []
                return rows, int(result["last"])
            except (_Retry, requests.ConnectionError, requests.Timeout) as exc:
                failures += 1
                if failures > self.max_retries:
                    raise KrakenApiError(f"giving up after {failures} failed requests") from exc
                delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (failures - 1))
                log.warning("backing off", reason=str(exc), delay_s=delay, failures=failures)
                self.sleep(delay)

    def _pace(self) -> None:
        now = self.clock()
        if self._last_request is not None:
            wait = self._last_request + self.min_interval_s - now
            if wait > 0:
                self.sleep(wait)
                now = self.clock()
        self._last_request = now

    def _save(self) -> None:
        if self.state_file is not None:
            self.state.save(self.state_file)


class _Retry(Exception):
    """A response worth retrying after a pause."""

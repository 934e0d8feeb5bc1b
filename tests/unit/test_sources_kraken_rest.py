"""Kraken REST Trades pager against a local server serving pages of a real response."""

from __future__ import annotations

import json
from collections.abc import Generator
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pytest
from support.kraken_servers import REST_TRADES, KrakenRestServer, rest_rows

from features.trade_ids import derive_trade_ids
from streaming.sources.kraken_rest import KrakenApiError, KrakenRestSource

pytestmark = pytest.mark.skipif(not REST_TRADES.exists(), reason=f"missing {REST_TRADES}")


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def raw_rows() -> list[list[Any]]:
    rows: list[list[Any]] = json.loads(REST_TRADES.read_text())["result"]["XBTUSDT"]
    return rows


def source(server: KrakenRestServer, clock: FakeClock, **options: Any) -> KrakenRestSource:
    return KrakenRestSource(pair="XBT/USDT", base_url=server.url, clock=clock, sleep=clock.sleep,
                            **options)


def collect(src: KrakenRestSource) -> pa.Table:
    return pa.concat_tables(list(src.batches()))


def test_pager_follows_the_last_cursor_through_every_page_at_one_request_per_second() -> None:
    rows = raw_rows()
    clock = FakeClock()
    with KrakenRestServer(rows, page_size=250) as server:
        got = collect(source(server, clock))
    assert got.num_rows == len(rows) == 1000
    assert got["trade_id"].to_pylist() == [int(r[6]) for r in rows]
    first, last = got.slice(0, 1).to_pylist()[0], got.slice(999, 1).to_pylist()[0]
    assert (first["price"], first["volume"]) == (float(rows[0][0]), float(rows[0][1]))
    assert last["timestamp_ms"] == int(Decimal(str(rows[-1][2])) * 1000)
    queries = server.state.requests
    assert {q["pair"] for q in queries} == {"XBTUSDT"}
    assert queries[0]["since"] == "0"
    assert queries[1]["since"] == str(int(Decimal(str(rows[249][2])) * 10**9))
    assert len(queries) == 6  # pages overlap at the cursor: 250 + 3 x 249 < 1000, then caught up
    assert sum(clock.sleeps) == pytest.approx(len(queries) - 1)  # spaced 1 s apart


def test_pager_stops_at_the_end_time_and_never_delivers_later_trades() -> None:
    rows = raw_rows()
    until_ns = int(Decimal(str(rows[600][2])) * 10**9)
    with KrakenRestServer(rows, page_size=250) as server:
        got = collect(source(server, FakeClock(), until_ns=until_ns))
        assert len(server.state.requests) == 3  # 0-249, 249-498, 498-747: the end is in page 3
    assert got.num_rows == 600
    assert got["trade_id"].to_pylist()[-1] == int(rows[599][6])


def test_rate_limit_error_is_retried_after_backoff_without_losing_a_page() -> None:
    clock = FakeClock()
    with KrakenRestServer(raw_rows(), page_size=400, rate_limit_at=1) as server:
        got = collect(source(server, clock, backoff_initial_s=3.0))
        assert server.state.rate_limited == 1
        assert server.state.requests[1]["since"] == server.state.requests[2]["since"]
    assert got.num_rows == 1000
    assert 3.0 in clock.sleeps


def test_rate_limit_exceeded_forever_gives_up_with_an_error() -> None:
    class AlwaysLimited(KrakenRestServer):
        def respond(self, path: str, query: dict[str, str]) -> dict[str, Any]:
            self.state.requests.append(query)
            return {"error": ["EAPI:Rate limit exceeded"]}

    with AlwaysLimited(raw_rows()) as server, pytest.raises(KrakenApiError, match="giving up"):
        collect(source(server, FakeClock(), max_retries=2))
    assert len(server.state.requests) == 3


def test_unknown_pair_error_is_raised_not_retried() -> None:
    class UnknownPair(KrakenRestServer):
        def respond(self, path: str, query: dict[str, str]) -> dict[str, Any]:
            self.state.requests.append(query)
            return {"error": ["EQuery:Unknown asset pair"]}

    with UnknownPair(raw_rows()) as server, pytest.raises(KrakenApiError, match="Unknown asset"):
        collect(source(server, FakeClock()))
    assert len(server.state.requests) == 1


def test_restart_resumes_from_the_saved_cursor(tmp_path: Path) -> None:
    state = tmp_path / "cursor.json"
    with KrakenRestServer(raw_rows(), page_size=300) as server:
        first_run = cast(Generator[pa.Table, None, None],
                         source(server, FakeClock(), state_file=state).batches())
        taken = [next(first_run), next(first_run)]  # the second page is taken, then a crash
        first_run.close()
        saved = json.loads(state.read_text())
        assert saved["last_trade_id"] == taken[0]["trade_id"].to_pylist()[-1]
        requests_before = len(server.state.requests)
        rest = collect(source(server, FakeClock(), state_file=state))
        assert server.state.requests[requests_before]["since"] == str(saved["since_ns"])
    # The page in flight at the crash is delivered again (at-least-once); nothing is skipped.
    ids = taken[0]["trade_id"].to_pylist() + rest["trade_id"].to_pylist()
    assert ids == [int(r[6]) for r in raw_rows()]


@pytest.mark.parametrize("page_size", [100, 300])  # 300: a page boundary splits equal times
def test_overlapping_pages_are_deduplicated_by_trade_id(page_size: int) -> None:
    with KrakenRestServer(raw_rows(), page_size=page_size) as server:
        got = collect(source(server, FakeClock()))
    assert got["trade_id"].to_pylist() == [int(r[6]) for r in raw_rows()]


@pytest.mark.parametrize("page_size", [130, 300])
def test_six_field_rows_get_the_same_ids_as_the_whole_file_would(page_size: int) -> None:
    rows = raw_rows()
    # Kraken prints seconds with 7 decimals; Braid's convention rounds them to microseconds.
    micros = np.rint(np.array([float(r[2]) for r in rows]) * 1e6).astype(np.int64)
    with KrakenRestServer(rows, page_size=page_size, six_field=True) as server:
        got = collect(source(server, FakeClock()))
    assert got["trade_id"].to_pylist() == derive_trade_ids(micros).tolist()


def test_result_key_other_than_the_query_pair_is_read() -> None:
    key, rows = rest_rows()
    with KrakenRestServer(rows, result_key="XXBTZUSD", page_size=500) as server:
        got = collect(source(server, FakeClock()))
    assert key == "XBTUSDT" and got.num_rows == 1000

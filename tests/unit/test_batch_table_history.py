"""Which day partitions a range's warm-up history is read from (batch.table_history)."""

from __future__ import annotations

from datetime import date, timedelta

from batch.table_history import days_holding

START = date(2018, 6, 1)


def days_before(*counts: int | None) -> dict[date, int | None]:
    """counts[0] is the day before START, counts[1] the one before it, ..."""
    return {START - timedelta(days=i + 1): c for i, c in enumerate(counts)}


def test_the_latest_days_holding_enough_candles_are_read() -> None:
    counts = days_before(1440, 1440, 1440)
    assert days_holding(counts, START, 661) == [START - timedelta(days=1)]


def test_a_sparse_pair_reads_back_as_far_as_its_candles_go() -> None:
    counts = days_before(137, 0, 120, 140, 300, 500)  # USDT/USD-like, one day without trades
    chosen = days_holding(counts, START, 661)
    assert chosen == [START - timedelta(days=i) for i in range(1, 6)]  # 137+0+120+140+300


def test_fewer_candles_than_needed_reads_every_earlier_day() -> None:
    counts = days_before(10, 20)
    assert days_holding(counts, START, 661) == sorted(counts, reverse=True)


def test_days_on_or_after_the_start_are_never_read() -> None:
    counts = {**days_before(700), START: 5, START + timedelta(days=1): 5}
    assert days_holding(counts, START, 661) == [START - timedelta(days=1)]


def test_an_unknown_count_reads_every_earlier_day() -> None:
    counts = days_before(100, None, 100, 900)
    assert days_holding(counts, START, 661) == sorted(counts, reverse=True)

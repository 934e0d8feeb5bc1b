"""Which month partitions a range's warm-up history is read from (batch.table_history)."""

from __future__ import annotations

from batch.table_history import months_holding


def test_the_latest_months_holding_enough_candles_are_read() -> None:
    counts = {"2018-05": 44_640, "2018-04": 43_200, "2018-03": 44_640}
    assert months_holding(counts, 661) == ["2018-05"]


def test_a_sparse_pair_reads_back_as_far_as_its_candles_go() -> None:
    # USDT/USD-like: a few candles a month, one month without trades in the table at all
    counts = {"2018-06": 137, "2018-05": 120, "2018-03": 140, "2018-02": 300, "2018-01": 500}
    assert months_holding(counts, 661) == ["2018-06", "2018-05", "2018-03", "2018-02"]


def test_the_month_of_the_start_counts_none_of_its_rows_but_is_read() -> None:
    # the start's month holds rows before and after the start: its count is 0, it is read
    counts = {"2018-06": 0, "2018-05": 700}
    assert months_holding(counts, 661) == ["2018-06", "2018-05"]


def test_fewer_candles_than_needed_reads_every_month() -> None:
    counts = {"2018-06": 10, "2018-05": 20}
    assert months_holding(counts, 661) == ["2018-06", "2018-05"]


def test_an_unknown_count_reads_every_month() -> None:
    counts = {"2018-06": 100, "2018-05": None, "2018-04": 100, "2018-03": 900}
    assert months_holding(counts, 661) == ["2018-06", "2018-05", "2018-04", "2018-03"]


def test_no_month_before_the_start_reads_nothing() -> None:
    assert months_holding({}, 661) == []

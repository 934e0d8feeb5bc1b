"""The UTC day ranges a run works on when its parameters do not say."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def today() -> date:
    return datetime.now(UTC).date()


def day_range(start: date | None, end: date | None) -> tuple[date, date]:
    """`[start, end)` in UTC days: no start means yesterday, no end the day after start."""
    first = start or today() - timedelta(days=1)
    last = end or first + timedelta(days=1)
    if last <= first:
        raise ValueError(f"end {last} must be after start {first}")
    return first, last


def utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def as_utc(moment: datetime) -> datetime:
    """A naive time read as UTC; an aware one converted to UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

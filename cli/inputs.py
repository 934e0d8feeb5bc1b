"""What the `braid` commands accept, checked where an option is parsed.

Each function here is a typer option callback (or a check a command calls once it has two
values to compare): it returns the value unchanged when it is good and raises
`typer.BadParameter` otherwise, so a bad value stops the command before it starts anything and
click names the option (`Invalid value for '--grace': ...`). `cli.main` turns that into one line
and exit code 2.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import typer

from features.windows import parse_duration_ms

_ZERO = re.compile(r"^\s*0+\s*(ms|s|m|h|d)?\s*$")
# a trading pair as Kraken and Braid write it: BASE/QUOTE, letters and digits
_PAIR = re.compile(r"^[A-Z0-9]{1,12}/[A-Z0-9]{1,12}$")


def _duration_ms(text: str, *, zero: bool) -> int:
    if zero and _ZERO.match(text):
        return 0
    try:
        return parse_duration_ms(text.strip())
    except ValueError as error:
        allowed = "0 or " if zero else ""
        raise typer.BadParameter(f"{text!r} is not a duration ({allowed}e.g. 500ms, 5s, 1m, "
                                 "1h, 1d)") from error


def duration(value: str | None) -> str | None:
    """A positive duration (`5s`, `1m` ...); None (the setting's) passes."""
    if value is not None and value != "":
        _duration_ms(value, zero=False)
    return value


def durations(values: list[str] | None) -> list[str] | None:
    """Positive durations, each checked."""
    for value in values or []:
        _duration_ms(value, zero=False)
    return values


def grace(value: str | None) -> str | None:
    """A duration that may be zero (a grace, a disorder bound); None passes."""
    if value is not None and value != "":
        _duration_ms(value, zero=True)
    return value


def duration_or_zero_ms(text: str) -> int:
    """The milliseconds of a checked :func:`grace` value."""
    return _duration_ms(text, zero=True)


def utc_day(value: str | None) -> str | None:
    """A UTC day, `YYYY-MM-DD`; None passes."""
    if value is not None:
        try:
            date.fromisoformat(value)
        except ValueError as error:
            raise typer.BadParameter(f"{value!r} is not a day (YYYY-MM-DD)") from error
    return value


def utc_time(value: str | None) -> str | None:
    """A UTC day or ISO-8601 time (naive means UTC); None passes."""
    if value is not None:
        parse_utc(value)
    return value


def parse_utc(value: str) -> datetime:
    """`2018-05-08`, `2018-05-08T10:00`, `...+02:00` -> an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise typer.BadParameter(f"{value!r} is not a date or ISO-8601 time "
                                 "(e.g. 2018-05-08 or 2018-05-08T10:00:00)") from error
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def time_or_epoch(value: str | None) -> str | None:
    """A time as :func:`utc_time`, or epoch seconds; None passes."""
    if value is not None:
        try:
            float(value)
        except ValueError:
            parse_utc(value)
    return value


def ordered(start: str | None, end: str | None, names: tuple[str, str], *,
            epoch_seconds: bool = False) -> None:
    """`start` must come before `end` (either may be absent); with `epoch_seconds`, numbers
    are epoch seconds (`braid trades publish --since`)."""
    if start is None or end is None:
        return

    def moment(value: str) -> datetime:
        if epoch_seconds:
            try:
                return datetime.fromtimestamp(float(value), UTC)
            except ValueError:
                pass
        return parse_utc(value)

    if moment(start) >= moment(end):
        raise typer.BadParameter(f"{start!r} is not before {end!r}: the range is empty",
                                 param_hint=f"'{names[0]}' / '{names[1]}'")


def pairs(values: list[str] | None) -> list[str] | None:
    """Trading pairs, `BASE/QUOTE` (e.g. XBT/USD)."""
    for value in values or []:
        if not _PAIR.match(value):
            raise typer.BadParameter(f"{value!r} is not a pair (BASE/QUOTE in capitals, "
                                     "e.g. XBT/USD)")
    return values


def comma_pairs(value: str) -> str:
    """Comma-separated pairs (`XBT/USD,ETH/USD`), at least one."""
    items = [p.strip() for p in value.split(",") if p.strip()]
    if not items:
        raise typer.BadParameter("give at least one pair, e.g. XBT/USD")
    pairs(items)
    return value


def existing_file(value: Path | str | None) -> Path | str | None:
    """A file that exists (`gs://` and other URLs pass: checked where they are read)."""
    if value and "://" not in str(value) and not Path(value).is_file():
        raise typer.BadParameter(f"no such file: {value}")
    return value


def existing_dir(value: Path | str | None) -> Path | str | None:
    """A folder that exists (URLs pass)."""
    if value and "://" not in str(value) and not Path(value).is_dir():
        raise typer.BadParameter(f"no such folder: {value}")
    return value


def writable_file(value: Path | str | None) -> Path | str | None:
    """A file to write: its folder must exist and it must not be a folder (URLs pass)."""
    if value and "://" not in str(value):
        path = Path(value)
        if path.is_dir():
            raise typer.BadParameter(f"{value} is a folder, not a file")
        if not path.resolve().parent.is_dir():
            raise typer.BadParameter(f"no such folder: {path.parent}")
    return value


def positive(value: float | None) -> float | None:
    """A number above zero; None passes."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value} is not above 0")
    return value


def probability(value: float) -> float:
    """A number in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"{value} is not in [0, 1]")
    return value

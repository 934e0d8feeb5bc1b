"""Figures of the reliability tests, for `bench/bench_reliability.py`: when
`BRAID_RELIABILITY_REPORT` names a file, each call appends one JSON line to it (several pytest
workers may append to the same file); otherwise the calls do nothing.

- `record_hostile`: per processor, the record kinds tried and the dead-letter reasons seen;
- `record_faults`: per fault-injection run, the faults injected and what the checker compared
  (messages checked against the uninterrupted run, lost, duplicated with a different value)."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping

import orjson

from tests.support.history_checker import HistoryCheck

ENV = "BRAID_RELIABILITY_REPORT"


def reason_class(reason: str) -> str:
    """A reason with its variable parts (numbers, parenthesised detail) cut, so like reasons
    group together."""
    reason = re.sub(r"\(.*", "(...)", reason)
    return re.sub(r"\d+", "N", reason)[:90]


def _append(line: dict[str, object]) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "ab") as out:  # one write per line: appends from workers do not interleave
        out.write(orjson.dumps(line) + b"\n")


def record_hostile(processor: str, kinds: Iterable[str], reasons: Iterable[str], *,
                   keeps_all: bool = False) -> None:
    """What was fed to `processor` (each record's kind) and the reasons it dead-lettered;
    `keeps_all`: it keeps every record by design (the archive), dead-lettering none."""
    record_counts(processor, Counter(kinds), Counter(reason_class(r) for r in reasons),
                  keeps_all=keeps_all)


def record_counts(processor: str, tried: Mapping[str, int], reasons: Mapping[str, int], *,
                  keeps_all: bool = False) -> None:
    """Counted already: records tried by kind, dead letters by reason class."""
    _append({"type": "hostile", "processor": processor, "tried": dict(tried),
             "reasons": dict(reasons), "keeps_all": keeps_all})


def record_faults(scenario: str, faults: Mapping[str, int], check: HistoryCheck) -> None:
    """One fault-injection run: `faults` injected (by kind) and what the checker found."""
    _append({"type": "faults", "scenario": scenario, "faults": dict(faults),
             "checked": check.checked, "lost": check.lost, "unexpected": check.unexpected,
             "different": check.different,
             "identical_duplicates": check.identical_duplicates})

"""Print what the hostile-input suite tried: per operator, the record kinds fed and the
dead-letter reasons seen (collected in `strategies.TALLY`), and hand them to the reliability
report (`tests.support.reliability_report`; each pytest worker its own part)."""

from __future__ import annotations

import pytest

from tests.support.reliability_report import record_counts
from tests.unit.reliability.strategies import TALLY


def pytest_sessionfinish(session: pytest.Session) -> None:
    for operator, counts in TALLY.items():
        record_counts(operator, {k[6:]: n for k, n in counts.items() if k.startswith("tried:")},
                      {k[5:]: n for k, n in counts.items() if k.startswith("dead:")})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    write = terminalreporter.write_line
    terminalreporter.section("hostile inputs: records tried and dead-letter reasons")
    for operator, counts in sorted(TALLY.items()):
        tried = {k[6:]: n for k, n in counts.items() if k.startswith("tried:")}
        reasons = {k[5:]: n for k, n in counts.items() if k.startswith("dead:")}
        hostile = {k: n for k, n in tried.items() if not k.startswith("valid")}
        write(f"{operator}: {sum(tried.values())} records fed, {sum(hostile.values())} hostile "
              f"of {len(hostile)} kinds, {sum(reasons.values())} dead letters")
        write("  kinds: " + ", ".join(f"{k}={n}" for k, n in sorted(tried.items())))
        for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            write(f"  {n:6d}  {reason}")

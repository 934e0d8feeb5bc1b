"""`braid trades publish`: help text, option checks and time parsing (no broker needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
import typer
from typer.testing import CliRunner

from cli.main import app
from cli.sources import SourceName, source_options, to_ns

runner = CliRunner()
DEFAULTS: dict[str, Any] = {
    "pairs": [], "files": [], "speedup": None, "count": None, "seed": 0, "since": None,
    "until": None, "state_file": None, "url": None, "api_version": 2, "out_of_order": 0.0,
    "late": 0.0,
}


def test_help_names_every_source_and_option() -> None:
    try:
        result = runner.invoke(app, ["trades", "publish", "--help"], env={"COLUMNS": "200"})
    finally:
        # The CLI configures structlog to print to the runner's stream, closed after the call.
        structlog.reset_defaults()
    assert result.exit_code == 0
    for word in ("synthetic", "kraken-ws", "kraken-rest", "--speedup", "--since", "--seed",
                 "--state-file", "--topic-prefix"):
        assert word in result.output


def test_times_parse_as_iso_8601_or_epoch_seconds_to_nanoseconds() -> None:
    expected = int(datetime(2025, 11, 10, 17, tzinfo=UTC).timestamp()) * 10**9
    assert to_ns("2025-11-10T17:00:00Z") == expected
    assert to_ns("2025-11-10T17:00:00") == expected  # naive means UTC
    assert to_ns(str(expected // 10**9)) == expected
    assert to_ns(None) is None


def test_rest_source_needs_exactly_one_pair() -> None:
    with pytest.raises(typer.BadParameter, match="exactly one"):
        source_options(SourceName.kraken_rest, **{**DEFAULTS, "pairs": ["A/B", "C/D"]})
    options = source_options(SourceName.kraken_rest,
                             **{**DEFAULTS, "pairs": ["XBT/USD"], "since": "1700000000"})
    assert options["pair"] == "XBT/USD" and options["since_ns"] == 1_700_000_000 * 10**9


def test_file_source_needs_existing_files_or_urls() -> None:
    with pytest.raises(typer.BadParameter, match="at least one"):
        source_options(SourceName.file, **DEFAULTS)
    with pytest.raises(typer.BadParameter, match="no such file"):
        source_options(SourceName.file, **{**DEFAULTS, "files": ["/no/such.csv"]})
    options = source_options(SourceName.file, **{**DEFAULTS, "files": ["gs://b/XBTUSD_x.csv"],
                                                 "speedup": 60.0})
    assert options == {"files": ["gs://b/XBTUSD_x.csv"], "speedup": 60.0, "pair": None}

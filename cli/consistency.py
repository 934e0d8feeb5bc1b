"""`braid consistency`: does the online store serve what the batch layer computes?"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from serving.consistency import consistency_report
from serving.consistency_output import text_table, to_html, to_json
from serving.settings import FEATURE_REPO
from serving.store import ServingError, open_store


def _utc(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as error:
        raise typer.BadParameter(f"not a date or ISO time: {text!r}") from error
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def consistency(
    start: Annotated[str, typer.Option("--from", help="Start (UTC date or ISO time).")],
    end: Annotated[str, typer.Option("--to", help="End, exclusive (UTC date or ISO time).")],
    pipeline: Annotated[str, typer.Option(help="markets or sensors.")] = "markets",
    profile: Annotated[str, typer.Option(help="Feast profile: local, redis, gcp.")] = "local",
    repo: Annotated[Path, typer.Option(help="The Feast repository.")] = FEATURE_REPO,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON here.")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")
                        ] = None,
    threshold: Annotated[float, typer.Option(
        help="Exit 1 when the match rate is below this (0..1).")] = 1.0,
) -> None:
    """Compare the online store's rows with the offline tables' rows at the same event times:
    per feature rows compared, match rate, missing and extra rows, largest difference."""
    try:
        report = consistency_report(open_store(profile, repo), _utc(start), _utc(end), pipeline)
    except ServingError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(text_table(report))
    if json_out is not None:
        json_out.write_text(to_json(report))
    if html_out is not None:
        html_out.write_text(to_html(report))
    if report.match_rate < threshold:
        typer.echo(f"match rate {report.match_rate:.6%} is below {threshold:.6%}", err=True)
        raise typer.Exit(1)

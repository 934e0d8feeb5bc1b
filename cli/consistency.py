"""`braid consistency`: does the online store serve what the batch layer computes?"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from cli import inputs
from serving.consistency import WrittenRows, consistency_report, written_rows
from serving.consistency_output import text_table, to_html, to_json
from serving.settings import FEATURE_REPO
from serving.store import ServingError, open_store
from streaming.settings import KafkaSettings
from streaming.topics import ONLINE_WRITES


def _utc(text: str) -> datetime:
    return inputs.parse_utc(text)


def consistency(
    start: Annotated[str, typer.Option("--from", help="Start (UTC date or ISO time).",
                                       callback=inputs.utc_time)],
    end: Annotated[str, typer.Option("--to", help="End, exclusive (UTC date or ISO time).",
                                     callback=inputs.utc_time)],
    pipeline: Annotated[str, typer.Option(help="markets or sensors.")] = "markets",
    profile: Annotated[str, typer.Option(help="Feast profile: local, redis, gcp.")] = "local",
    repo: Annotated[Path, typer.Option(help="The Feast repository.",
                                       callback=inputs.existing_dir)] = FEATURE_REPO,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON here.",
                                                  callback=inputs.writable_file)] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.",
                                                  callback=inputs.writable_file)] = None,
    threshold: Annotated[float, typer.Option(
        help="Exit 1 when the match rate is below this (0..1).",
        callback=inputs.probability)] = 1.0,
    history: Annotated[bool, typer.Option(
        help="Also every row the online sink wrote in the range (its online_writes log on the "
             "broker of KAFKA_BOOTSTRAP_SERVERS), not only what the store holds now.")] = False,
    topic_prefix: Annotated[str, typer.Option(help="Prefix of the log topic's name.")] = "",
) -> None:
    """Compare the online store's rows with the offline tables' rows at the same event times:
    per feature rows compared, match rate, missing and extra rows, largest difference."""
    inputs.ordered(start, end, ("--from", "--to"))
    if pipeline not in ("markets", "sensors"):
        raise typer.BadParameter(f"unknown pipeline {pipeline!r} (markets or sensors)",
                                 param_hint="'--pipeline'")
    try:
        written = _write_log(topic_prefix + ONLINE_WRITES) if history else None
        report = consistency_report(open_store(profile, repo), _utc(start), _utc(end), pipeline,
                                    written)
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


def _write_log(topic: str) -> WrittenRows:
    """Every row of the online sink's write log (read from the start)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from streaming.runtime.topic_reader import read_topic

    kafka = KafkaSettings()
    try:
        known = AdminClient(kafka.client_config()).list_topics(timeout=15).topics
    except KafkaException as error:
        raise ServingError(f"the write log's broker {kafka.bootstrap_servers} is unreachable: "
                           f"{error}") from error
    if topic not in known:
        raise ServingError(f"no write log: topic {topic} does not exist on "
                           f"{kafka.bootstrap_servers} (run the sink with --write-log)")
    return written_rows([v for _, _, _, v in read_topic(kafka, topic) if v is not None])

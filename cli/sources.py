"""`braid trades publish`: run the trades service with one source (synthetic, file, Kraken)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import inputs
from streaming.settings import KafkaSettings
from streaming.sources import create_source
from streaming.topics import DEAD_LETTER, TRADES

app = typer.Typer(help="Publish trades from a source to Kafka.", no_args_is_help=True)


class SourceName(StrEnum):
    synthetic = "synthetic"
    file = "file"
    kraken_ws = "kraken-ws"
    kraken_rest = "kraken-rest"


def to_ns(value: str | None) -> int | None:
    """``2025-11-10T17:00:00Z`` (any ISO 8601; naive means UTC) or epoch seconds -> epoch ns."""
    if value is None:
        return None
    try:
        return int(float(value) * 1e9)
    except ValueError:
        pass
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e6) * 1000


def source_options(
    source: SourceName, *, pairs: list[str], files: list[str], speedup: float | None,
    count: int | None, seed: int, since: str | None, until: str | None,
    state_file: Path | None, url: str | None, api_version: int, out_of_order: float,
    late: float,
) -> dict[str, Any]:
    """The chosen source's constructor options from the command line."""
    if source is SourceName.synthetic:
        return {"count": count, "seed": seed, "pairs": pairs or None,
                "out_of_order_fraction": out_of_order, "late_fraction": late}
    if source is SourceName.file:
        if not files:
            raise typer.BadParameter("--source file needs at least one --file",
                                     param_hint="'--file'")
        missing = [f for f in files if "://" not in f and not Path(f).is_file()]
        if missing:
            raise typer.BadParameter(f"no such file: {', '.join(missing)}", param_hint="'--file'")
        if len(pairs) > 1:
            raise typer.BadParameter("--source file takes at most one --pair (for every CSV)",
                                     param_hint="'--pair'")
        return {"files": files, "speedup": speedup, "pair": pairs[0] if pairs else None}
    if source is SourceName.kraken_ws:
        options: dict[str, Any] = {"pairs": pairs or ["BTC/USD", "ETH/USD"],
                                   "api_version": api_version}
        return {**options, "url": url} if url else options
    if len(pairs) != 1:
        raise typer.BadParameter("--source kraken-rest pages exactly one --pair, e.g. XBT/USD",
                                 param_hint="'--pair'")
    inputs.ordered(since, until, ("--since", "--until"), epoch_seconds=True)
    options = {"pair": pairs[0], "since_ns": to_ns(since) or 0, "until_ns": to_ns(until),
               "state_file": state_file}
    return {**options, "base_url": url} if url else options


@app.command()
def publish(
    source: Annotated[SourceName, typer.Option(
        "--source", "-s", help="Where the trades come from.")],
    pairs: Annotated[list[str] | None, typer.Option(
        "--pair", "-p",
        help="Pair, repeatable. synthetic: a subset of its 8 pairs; kraken-ws: pairs to "
             "subscribe (v2 names, e.g. BTC/USD); kraken-rest: the one pair to page; file: the "
             "pair of the CSVs when their names do not tell it.",
        callback=inputs.pairs)] = None,
    files: Annotated[list[str] | None, typer.Option(
        "--file", "-f",
        help="file: a Kraken trade CSV (any format) or trade Parquet, a local path or an "
             "fsspec URL (gs://...); repeatable, merged by event time.")] = None,
    speedup: Annotated[float | None, typer.Option(
        help="file: replay at this multiple of event time (60 = a minute per second); "
             "default full speed.", callback=inputs.positive)] = None,
    count: Annotated[int | None, typer.Option(
        help="synthetic: trades to generate (default endless); other sources: stop after "
             "this many trades.", min=1)] = None,
    seed: Annotated[int, typer.Option(
        help="synthetic: random seed (same seed, same trades).")] = 0,
    out_of_order: Annotated[float, typer.Option(
        help="synthetic: fraction of trades delivered up to 2 s late (within grace).",
        callback=inputs.probability)] = 0.0,
    late: Annotated[float, typer.Option(
        help="synthetic: fraction of trades delivered 10-60 s late (beyond grace).",
        callback=inputs.probability)] = 0.0,
    since: Annotated[str | None, typer.Option(
        help="kraken-rest: start time, ISO 8601 or epoch seconds (default: the start).",
        callback=inputs.time_or_epoch)] = None,
    until: Annotated[str | None, typer.Option(
        help="kraken-rest: end time, exclusive (default: until caught up).",
        callback=inputs.time_or_epoch)] = None,
    state_file: Annotated[Path | None, typer.Option(
        help="kraken-rest: cursor file; an existing one resumes where it stopped.")] = None,
    url: Annotated[str | None, typer.Option(
        help="kraken-ws: WebSocket URL (default wss://ws.kraken.com/v2); kraken-rest: base "
             "URL (default https://api.kraken.com).")] = None,
    api_version: Annotated[int, typer.Option(
        help="kraken-ws: subscribe with API v2 or v1.", min=1, max=2)] = 2,
    topic_prefix: Annotated[str, typer.Option(
        help="Prefix for the topic names (isolates a run on a shared broker).")] = "",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    close_windows_at_end: Annotated[bool, typer.Option(
        help="When the source ends by itself (a file, a REST backfill with --until, --count "
             "reached), write an end-of-input closure record per pair into `trades`: the "
             "history's last windows close in the stream and the batch alike (a later trade "
             "of those windows is late).")] = False,
) -> None:
    """Validate every trade of a source and publish it to `trades` (keyed by pair).

    Invalid rows go to `dead_letter` with the reason. Creates the topics if missing.

    Stops at the source's end, after --count trades, on Ctrl-C or SIGTERM; flushes first.
    """
    from streaming.trades_service import TradesService  # keeps `--help` fast

    if close_windows_at_end and state_file is not None and count is not None:
        # --count reached counts as the end of input; a run resuming from the cursor would go
        # on inside the windows the closure records closed, and its trades would be late
        raise typer.BadParameter(
            "with --state-file, --count does not end the history (the next run resumes "
            "inside it): end it with --until, or leave out --count",
            param_hint="--close-windows-at-end")

    options = source_options(
        source, pairs=pairs or [], files=files or [], speedup=speedup, count=count, seed=seed,
        since=since, until=until, state_file=state_file, url=url, api_version=api_version,
        out_of_order=out_of_order, late=late,
    )
    trade_source = create_source(source.value, **options)
    service = TradesService(
        trade_source, KafkaSettings(), progress=progress,
        trades_topic=f"{topic_prefix}{TRADES}", dead_letter_topic=f"{topic_prefix}{DEAD_LETTER}",
        close_windows_at_end=close_windows_at_end,
    )
    limit = None if source is SourceName.synthetic else count
    summary = service.run(max_trades=limit, total=count)
    typer.echo(
        f"sent {summary.sent:,} trades, rejected {summary.rejected:,}, failed {summary.failed:,}"
        f" in {summary.elapsed_s:.1f} s ({summary.trades_per_s:,.0f} trades/s)"
    )
    if summary.failed:
        raise typer.Exit(code=1)

"""`braid`: the local stack, the jobs and the demo, one sub-command each (`--help` on all)."""

from __future__ import annotations

import typer

from cli import (
    api,
    batch,
    consistency,
    demo,
    flows,
    markets,
    online_sink,
    sensors,
    sources,
    stack,
    topics,
    train,
)
from cli.logging_setup import configure_logging

app = typer.Typer(
    help="Braid: a batch-plus-stream feature platform for real-time ML.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _main(
    log_level: str = typer.Option("INFO", envvar="BRAID_LOG_LEVEL", help="Log level."),
) -> None:
    configure_logging(log_level)


# `braid up | down | status` live at the top level; the rest are groups.
stack.register(app)
app.command(name="demo")(demo.demo)
app.add_typer(sources.app, name="trades", help="Publish trades from a source to Kafka.")
app.add_typer(markets.app, name="markets", help="Markets processors: candles, indicators.")
app.add_typer(batch.app, name="batch", help="Spark backfills and Dataproc submission.")
app.add_typer(sensors.app, name="sensors", help="The sensors pipeline.")
app.add_typer(train.app, name="train", help="Train, log to MLflow, register, promote.")
app.add_typer(topics.app, name="topics", help="Create the topic catalogue on the broker.")
app.add_typer(flows.app, name="flows", help="Serve the Prefect deployments (the worker).")
app.command(name="online-sink")(online_sink.online_sink)
app.command(name="consistency")(consistency.consistency)
app.command(name="api")(api.api)

if __name__ == "__main__":
    app()

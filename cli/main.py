"""`braid`: the local stack, the jobs and the demo, one sub-command each (`--help` on all).

Bad input (an option click cannot parse, a value `cli.inputs` refuses, an inconsistent pair of
options, a setting pydantic refuses) is one line on stderr naming the command and the input,
`braid <command>: <what is wrong> (see --help)`, and exit code 2: never a traceback or a usage
box. Anything else that fails is a bug or an outage and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from pydantic import ValidationError

# typer 0.29 runs its own copy of click: its exceptions are these, not the `click` package's
from typer._click.core import Command
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

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


class BraidApp(typer.Typer):
    """The root command: runs click without its standalone error display, so that every
    command's bad input is answered the same way (module docstring)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("standalone_mode", True) is False:
            return super().__call__(*args, **kwargs)
        kwargs.setdefault("prog_name", "braid")
        argv = list(kwargs.pop("args", args[0] if args else sys.argv[1:]))
        try:
            code = super().__call__(args=argv, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as error:  # `braid` or `braid sensors` alone
            typer.echo(error.ctx.get_help() if error.ctx else str(error))
            sys.exit(2)
        except UsageError as error:
            where = error.ctx.command_path if error.ctx else "braid"
            sys.exit(_bad_input(where, error.format_message()))
        except ValidationError as error:
            if not _is_settings_error(error):  # a bug or bad data mid-run: keep its traceback
                raise
            first = error.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or error.title
            sys.exit(_bad_input(_command_path(self, argv), f"{field}: {first['msg']}"))
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _is_settings_error(error: ValidationError) -> bool:
    """Whether `error` is a settings class refusing its configuration (environment, `.env`,
    options), not any model validated while the command ran."""
    from pydantic_settings import BaseSettings

    classes: list[type] = [BaseSettings]
    names: set[str] = set()
    while classes:
        cls = classes.pop()
        names.add(cls.__name__)
        classes.extend(cls.__subclasses__())
    return error.title in names


def _bad_input(where: str, message: str) -> int:
    text = " ".join(message.split())
    typer.echo(f"{where}: {text} (see '{where} --help')", err=True)
    return 2


def _command_path(root: typer.Typer, argv: list[str]) -> str:
    """`braid markets candles` from the arguments (the click context is gone by then)."""
    command: Command = typer.main.get_command(root)
    path = ["braid"]
    for arg in argv:
        if arg.startswith("-") or not isinstance(command, TyperGroup):
            continue
        sub = command.commands.get(arg)
        if sub is None:
            break
        command = sub
        path.append(arg)
    return " ".join(path)


app = BraidApp(
    help="Braid: a batch-plus-stream feature platform for real-time ML.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _main(
    log_level: str | None = typer.Option(
        None, help="Log level (default: BRAID_LOG_LEVEL from the environment or .env, else "
        "INFO)."),
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

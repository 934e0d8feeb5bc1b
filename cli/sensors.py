"""`braid sensors ...` commands."""

import typer

app = typer.Typer(help="sensors commands", no_args_is_help=True)

"""`braid markets ...` commands."""

import typer

app = typer.Typer(help="markets commands", no_args_is_help=True)

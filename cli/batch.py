"""`braid batch ...` commands."""

import typer

app = typer.Typer(help="batch commands", no_args_is_help=True)

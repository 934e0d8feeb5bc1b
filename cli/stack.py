"""`braid stack ...` commands."""

import typer

app = typer.Typer(help="stack commands", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Add `up`, `down` and `status` to the root command (filled in by the infra work)."""

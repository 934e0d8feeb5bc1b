"""A spinner with the step a long job is at, on stderr (shown only on a terminal)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

from training.progress import reporting

_console = Console(stderr=True)
SPINNER = "dots"  # rich's default


@contextmanager
def training_status(what: str, console: Console | None = None) -> Iterator[None]:
    """`what: <step>` while a training run inside the block reports its steps."""
    shown = console or _console
    status = shown.status(f"{what}: starting", spinner=SPINNER)
    # naming the spinner makes rich redraw at once: a step shorter than one refresh (an 80 ms
    # fit) is still shown, not skipped between two refreshes
    with status, reporting(lambda step: status.update(f"{what}: {step}", spinner=SPINNER)):
        yield

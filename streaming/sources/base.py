"""The trade-source interface and the registry of sources by name.

A source is anything that yields trades as Arrow tables in ``TRADE_ARROW_SCHEMA``, in arrival
order (the order a live consumer would have seen them; event time may be out of order). The
trades service pulls ``batches()`` and does not care where they come from.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from features.schemas.trade import TRADE_ARROW_SCHEMA


class TradeSource(ABC):
    """Yields trades in ``TRADE_ARROW_SCHEMA``, one Arrow table per batch, in arrival order.

    ``batches()`` may be infinite (a live feed); it ends when the source is exhausted or
    :meth:`close` was called. A batch is never empty. ``close`` is idempotent and safe to call
    from another thread or a signal handler.
    """

    #: The registry name (``"synthetic"``, ``"file"``, ...), also the ``source`` of dead letters.
    name: str = "abstract"

    @abstractmethod
    def batches(self) -> Iterator[pa.Table]:
        """The trades, batch by batch."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op for finite sources
        """Ask the source to stop; the current ``batches()`` ends at the next batch boundary."""

    def take_rejects(self) -> list[SourceReject]:
        """Input the source could not read as trades since the last call (a malformed frame,
        one broken trade of a frame), for the trades service's dead-letter topic. Sources that
        cannot meet such input return nothing."""
        return []


@dataclass(frozen=True)
class SourceReject:
    """Input a source could not turn into a trade: why, and the input as received (text)."""

    reason: str
    raw: str


def conform(table: pa.Table) -> pa.Table:
    """``table`` with exactly the trade columns, in order, cast to the trade types."""
    return table.select(list(TRADE_ARROW_SCHEMA.names)).cast(TRADE_ARROW_SCHEMA)


SourceFactory = Callable[..., TradeSource]

# name -> "module:attribute"; imported on first use so a CLI run loads only the source it needs.
_BUILTIN: dict[str, str] = {
    "synthetic": "streaming.sources.synthetic:SyntheticTradeSource",
    "file": "streaming.sources.file_replay:FileReplaySource",
    "kraken-ws": "streaming.sources.kraken_ws:KrakenWebSocketSource",
    "kraken-rest": "streaming.sources.kraken_rest:KrakenRestSource",
}
_REGISTERED: dict[str, SourceFactory] = {}


def register_source(name: str, factory: SourceFactory) -> None:
    """Make ``create_source(name, ...)`` build sources with ``factory``."""
    _REGISTERED[name] = factory


def available_sources() -> list[str]:
    """Every registered source name, built-in ones included."""
    return sorted({*_BUILTIN, *_REGISTERED})


def create_source(name: str, **options: Any) -> TradeSource:
    """A source by registry name, with its keyword options (see each source's constructor)."""
    if name in _REGISTERED:
        return _REGISTERED[name](**options)
    if name not in _BUILTIN:
        raise KeyError(f"unknown trade source {name!r}; known: {', '.join(available_sources())}")
    module_name, attribute = _BUILTIN[name].split(":")
    factory: SourceFactory = getattr(importlib.import_module(module_name), attribute)
    return factory(**options)

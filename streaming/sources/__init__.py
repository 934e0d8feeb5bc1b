"""Trade sources: Kraken WebSocket, Kraken REST, file replay, synthetic (see README.md)."""

from streaming.sources.base import (
    TradeSource,
    available_sources,
    conform,
    create_source,
    register_source,
)

__all__ = ["TradeSource", "available_sources", "conform", "create_source", "register_source"]

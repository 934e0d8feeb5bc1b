"""`braid markets candles | indicators`: the markets speed-layer processors (long-running)."""

from __future__ import annotations

import typer

from features.windows import TumblingWindow, parse_duration_ms
from streaming.pipelines.markets import MarketsTopics, candle_processor, indicator_processor
from streaming.settings import KafkaSettings, MarketsSettings, TopicSettings
from streaming.topics import ensure_topics

app = typer.Typer(help="Markets processors: trades -> candles -> indicators.",
                  no_args_is_help=True)

PREFIX = typer.Option("", help="Prefix for every topic name (isolates a run on a shared broker).")


def _topics(prefix: str) -> MarketsTopics:
    topics = MarketsTopics.prefixed(prefix) if prefix else MarketsTopics()
    ensure_topics(KafkaSettings(), topics.specs(TopicSettings().market_partitions), TopicSettings())
    return topics


@app.command()
def candles(
    durations: list[str] = typer.Option(
        None, "--duration", "-d",
        help="Candle duration, repeatable (e.g. -d 60s -d 5m). [env BRAID_CANDLE_DURATIONS]"),
    grace: str = typer.Option(None, help="Grace period for out-of-order trades. [env BRAID_GRACE]"),
    idle_timeout: str = typer.Option(
        None, help="Close a quiet pair's windows after this much wall-clock silence."),
    group: str = typer.Option("braid-candles", help="Consumer group (share it to scale out)."),
    batch_size: int = typer.Option(10_000, help="Messages per micro-batch."),
    topic_prefix: str = PREFIX,
) -> None:
    """Consume `trades`, emit final OHLCV candles to `candles` until SIGTERM."""
    settings = MarketsSettings()
    grace_ms = parse_duration_ms(grace or settings.grace)
    windows = tuple(TumblingWindow(parse_duration_ms(d), grace_ms)
                    for d in (durations or settings.candle_durations))
    idle_ms = parse_duration_ms(idle_timeout or settings.idle_timeout)
    candle_processor(KafkaSettings(), windows, topics=_topics(topic_prefix),
                     idle_timeout_ms=idle_ms, group=group, batch_size=batch_size).run()


@app.command()
def indicators(
    group: str = typer.Option("braid-indicators", help="Consumer group (share it to scale out)."),
    topic_prefix: str = PREFIX,
) -> None:
    """Consume `candles`, emit TA-Lib indicators to `technical_indicators` until SIGTERM."""
    indicator_processor(KafkaSettings(), topics=_topics(topic_prefix), group=group).run()

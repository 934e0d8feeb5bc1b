"""`braid markets candles | indicators | predictor`: the markets speed-layer processors
(long-running)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import inputs
from cli.predictor import predictor
from features.windows import TumblingWindow, parse_duration_ms
from streaming.pipelines.markets import MarketsTopics, candle_processor, indicator_processor
from streaming.settings import EventTimeSettings, KafkaSettings, MarketsSettings, TopicSettings
from streaming.topics import ensure_topics

app = typer.Typer(help="Markets processors: trades -> candles -> indicators -> predictions.",
                  no_args_is_help=True)

Prefix = Annotated[str, typer.Option(
    help="Prefix for every topic name (isolates a run on a shared broker).")]


def _topics(prefix: str) -> MarketsTopics:
    topics = MarketsTopics.prefixed(prefix) if prefix else MarketsTopics()
    settings = TopicSettings()
    ensure_topics(KafkaSettings(), topics.specs(settings.market_partitions), settings)
    return topics


@app.command()
def candles(
    durations: Annotated[list[str] | None, typer.Option(
        "--duration", "-d",
        help="Candle duration, repeatable (-d 60s -d 5m). [env BRAID_CANDLE_DURATIONS]",
        callback=inputs.durations)] = None,
    grace: Annotated[str | None, typer.Option(
        help="Grace period for out-of-order trades (0: none). [env BRAID_GRACE, default 5s]",
        callback=inputs.grace)] = None,
    idle_timeout: Annotated[str | None, typer.Option(
        help="Close a quiet live pair's windows after this much wall-clock silence, through "
             "a closure record written into `trades`. [env BRAID_IDLE_TIMEOUT, default 10s]",
        callback=inputs.duration)] = None,
    live_lag: Annotated[str | None, typer.Option(
        help="A pair is live (closed on idle) while its latest trade reached Kafka at most "
             "this long after its stream time; history closes by event time alone. "
             "[env BRAID_LIVE_LAG, default 1m]", callback=inputs.duration)] = None,
    group: Annotated[str, typer.Option(help="Consumer group (share it to scale out).")] = (
        "braid-candles"),
    batch_size: Annotated[int, typer.Option(help="Messages per micro-batch.", min=1)] = 10_000,
    max_event_time_skew: Annotated[str | None, typer.Option(
        help="Dead-letter a trade stamped further ahead of its Kafka timestamp. "
             "[env BRAID_MAX_EVENT_TIME_SKEW, default 1h]", callback=inputs.duration)] = None,
    topic_prefix: Prefix = "",
) -> None:
    """Consume `trades`, emit final OHLCV candles to `candles` until SIGTERM."""
    settings = MarketsSettings()
    grace_ms = inputs.duration_or_zero_ms(grace or settings.grace)
    windows = tuple(TumblingWindow(parse_duration_ms(d), grace_ms)
                    for d in (durations or settings.candle_durations))
    idle_ms = parse_duration_ms(idle_timeout or settings.idle_timeout)
    live_lag_ms = parse_duration_ms(live_lag or settings.live_lag)
    skew_ms = parse_duration_ms(max_event_time_skew or EventTimeSettings().max_event_time_skew)
    candle_processor(KafkaSettings(), windows, topics=_topics(topic_prefix),
                     idle_timeout_ms=idle_ms, live_lag_ms=live_lag_ms, group=group,
                     batch_size=batch_size, max_event_time_skew_ms=skew_ms).run()


@app.command()
def indicators(
    group: Annotated[str, typer.Option(help="Consumer group (share it to scale out).")] = (
        "braid-indicators"),
    topic_prefix: Prefix = "",
) -> None:
    """Consume `candles`, emit TA-Lib indicators to `technical_indicators` until SIGTERM."""
    indicator_processor(KafkaSettings(), topics=_topics(topic_prefix), group=group).run()


app.command()(predictor)

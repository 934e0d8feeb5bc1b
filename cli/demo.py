"""`braid demo`: the whole markets speed layer on the embedded stack, with no data and no network.

Starts the local stack, runs the candle and indicator processors as child processes, publishes
seeded synthetic trades through the trades service, waits for the last windows to close on
idleness, prints the latest candles and indicators per pair, and stops the processors (the stack
stays up; `braid down` stops it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from infra import stack
from infra.settings import StackSettings
from streaming.pipelines.markets import MarketsTopics, read_candles, read_indicators
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.sources.synthetic import SyntheticTradeSource
from streaming.topics import ensure_topics
from streaming.trades_service import TradesService

console = Console(width=120)


def demo(
    trades: int = typer.Option(1_000_000, help="Synthetic trades to publish."),
    seed: int = typer.Option(7, help="Seed of the synthetic generator."),
    idle_timeout: str = typer.Option("3s", help="Close quiet pairs' windows after this."),
    topic_prefix: str = typer.Option("demo.", help="Prefix of the demo's topics."),
) -> None:
    """Run the markets speed layer end to end on embedded defaults and show what it computed."""
    settings = StackSettings()
    console.rule("1. the local stack")
    stack.up(settings)
    kafka = settings.local_kafka_settings()
    topics = MarketsTopics.prefixed(topic_prefix)
    ensure_topics(kafka, topics.specs(TopicSettings().market_partitions), TopicSettings())

    console.rule("2. processors (child processes, logs under var/log/)")
    log_dir = Path(settings.state_dir) / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    env_args = ["--topic-prefix", topic_prefix]
    children = [
        _spawn(["markets", "candles", "-d", "60s", "-d", "5m", "--idle-timeout", idle_timeout,
                *env_args], kafka, log_dir / "demo-candles.log"),
        _spawn(["markets", "indicators", *env_args], kafka, log_dir / "demo-indicators.log"),
    ]
    try:
        console.rule(f"3. publish {trades:,} synthetic trades")
        service = TradesService(SyntheticTradeSource(count=trades, seed=seed), kafka,
                                trades_topic=topics.trades, dead_letter_topic=topics.dead_letter)
        summary = service.run()
        console.print(f"published {summary.sent:,} trades ({summary.trades_per_s:,.0f}/s)")
        console.rule("4. waiting for the last windows to close on idleness")
        _wait_for_output(kafka, topics.indicators)
        _show(kafka, topics)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(30)
    console.print("\nThe stack is still up: `braid status`, `braid down`.")


def _spawn(args: list[str], kafka: KafkaSettings, log: Path) -> subprocess.Popen[bytes]:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "cli.main", *args],
                                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


def _wait_for_output(kafka: KafkaSettings, topic: str, quiet_s: float = 8.0) -> None:
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + 300
    with console.status("processing..."):
        while time.monotonic() < deadline:
            count = len(read_topic(kafka, topic, settle_s=0.3))
            if count != last:
                last, since = count, time.monotonic()
            elif count > 0 and time.monotonic() - since >= quiet_s:
                return
            time.sleep(1)
    raise typer.Exit(code=1)


def _show(kafka: KafkaSettings, topics: MarketsTopics) -> None:
    candles = read_candles(kafka, topics.candles).to_pylist()
    indicators = {(r["pair"], r["window_ms"], r["window_start_ms"]): r
                  for r in read_indicators(kafka, topics.indicators).to_pylist()}
    table = Table(title=f"latest 1-minute candle and indicators per pair ({len(candles):,} "
                        f"candles, {len(indicators):,} indicator rows)")
    shown = ("sma_20", "bb_upper", "mfi_14", "roc_10", "rsi_14")
    for column in ("pair", "window start", "close", "volume", "trades", *shown):
        table.add_column(column)
    latest: dict[str, dict[str, object]] = {}
    for candle in candles:
        if candle["window_ms"] == 60_000:
            latest[str(candle["pair"])] = candle
    for pair, c in sorted(latest.items()):
        ind = indicators.get((pair, 60_000, c["window_start_ms"]), {})
        start = datetime.fromtimestamp(int(str(c["window_start_ms"])) / 1000, UTC)
        table.add_row(pair, start.strftime("%m-%d %H:%M"), f"{c['close']:.4f}",
                      f"{c['volume']:.2f}", str(c["trade_count"]),
                      *(_fmt(ind.get(k)) for k in shown))
    console.print(table)
    console.print("nan = not warmed up yet: each indicator sees a fixed number of candles "
                  "(rsi_14: 326); publish more trades (--trades) to see it.")


def _fmt(value: object) -> str:
    return "—" if value is None else f"{float(str(value)):.4f}"

"""Stream and batch agree whatever the arrival timing: pauses longer than the idle timeout in a
rate-limited REST backfill, in a paced file replay, and a WebSocket outage followed by v2's
snapshot.

Everything runs as real processes on Apache Kafka: `braid trades publish` (the trades service
with its REST, file and WebSocket sources, against local Kraken servers), `braid markets
candles` and `braid markets indicators`; then Spark reads the very `trades` topic (the job of
`braid batch backfill --kafka-topic`), and the stream's rows go through the online sink into
`braid consistency`'s report against the backfill's tables. The rule under test
(`features.windows`): a window closes when its pair's stream time passes its end + grace, or
when a closure record in the `trades` log closes it: a quiet live pair's window is closed on
idle by a closure record the candle processor writes into the log, so history closes by event
time alone and the batch, reading the same log, drops exactly the trades the stream drops.

1. History (real 2018 XBT/USD and ETH/USD trades): 20 minutes through the REST source against
   a server that rate-limits every third request (backoff 2 s, the idle timeout 1 s), then
   4 minutes through the file replay at 10x event time (pauses of 1.5 s and more inside
   windows). Nothing is closed on idle: the stream equals the `features/` reference of every
   trade, Spark-from-Kafka equals the stream, nothing is dead-lettered, consistency is 100%.
2. Live (the same real trades, re-stamped to the last minutes): the WebSocket connection drops
   and stays away until the candle processor has closed the quiet pairs' minute on idle; v2's
   snapshot then brings the outage's trades of that minute. They are dead-lettered `closed on
   idle`, Spark-from-Kafka drops exactly them (the closure records are in the topic it reads),
   and everything else is equal as above.
"""

from __future__ import annotations

import csv
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from pyspark.sql import SparkSession

from batch.arrival_order import ArrivalOrder
from batch.backfill import BackfillConfig, BackfillSummary, run_backfill
from batch.kafka_input import KafkaInput
from batch.spark_session import spark_session
from features.kraken_formats import read_trades_csv
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA
from features.schemas.window_closure import is_closure
from streaming.pipelines.markets import MarketsTopics, read_candles, read_indicators
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import ensure_topics
from tests.support.kraken_servers import (
    DATA,
    HOLD,
    WAIT,
    KrakenRestServer,
    KrakenWsServer,
    v2_subscribe_ack,
    v2_trade,
    v2_trade_frame,
)
from tests.support.lambda_checks import (
    CANDLE_FLOATS,
    INDICATOR_FLOATS,
    KEY,
    assert_identical,
    assert_served_rows_consistent,
    read_sorted,
    reference_outputs,
    sort_rows,
)
from tests.support.processes import BraidProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRADES = DATA / "kraken-trades"
FILES = {"XBT/USD": "XBTUSD_kraken_2018_trades.sorted.csv",
         "ETH/USD": "ETHUSD_kraken_2018_trades.sorted.csv"}
PAIRS = list(FILES)
MINUTE, HOUR = 60_000, 3_600_000
GRACE_MS = 2_000
IDLE_MS = 1_000
PARTITIONS = 2
# both files trade from here on (2018-05-08 06:00 UTC)
SESSION_MS = 1_525_759_200_000
REST_SLICE = (SESSION_MS + 3 * HOUR, SESSION_MS + 3 * HOUR + 20 * MINUTE)
FILE_SLICE = (SESSION_MS + 5 * HOUR + 30 * MINUTE, SESSION_MS + 5 * HOUR + 34 * MINUTE)
FILE_SPEEDUP = 10
# three minutes that trade in each half minute, re-stamped to the last minutes (live test)
WS_SOURCE_START = SESSION_MS + 190 * MINUTE


@dataclass(frozen=True)
class Trades:
    """A pair's real trades: the file's text rows and the same rows parsed (ids derived)."""

    rows: list[list[str]]  # time, price, volume, b|s, m|l, misc
    table: pa.Table


@pytest.fixture(scope="module")
def real_trades() -> dict[str, Trades]:
    out = {}
    for pair, name in FILES.items():
        path = TRADES / name
        if not path.exists():
            pytest.skip(f"real data {path} is absent")
        with path.open() as f:
            rows = list(csv.reader(f))[1:]
        out[pair] = Trades(rows, read_trades_csv(str(path)))
    return out


def _slice(trades: Trades, span: tuple[int, int]) -> tuple[list[list[str]], pa.Table]:
    ts = trades.table["timestamp_ms"].to_numpy()
    mask = (ts >= span[0]) & (ts < span[1])
    index = np.flatnonzero(mask)
    return [trades.rows[i] for i in index], trades.table.filter(pa.array(mask))


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    yield spark_session("braid-tests", master="local[2]", shuffle_partitions=2)


@dataclass
class Pipeline:
    """The speed layer on topics of its own: the candle and indicator processors as `braid`
    child processes."""

    kafka: KafkaSettings
    topics: MarketsTopics
    prefix: str
    folder: Path
    processes: list[BraidProcess]

    def cli(self, args: list[str], log: str) -> BraidProcess:
        env = {"BRAID_TOPIC_MARKET_PARTITIONS": str(PARTITIONS)}
        return BraidProcess([*args, "--topic-prefix", self.prefix], self.kafka,
                            self.folder / log, env)

    def stop(self) -> None:
        for process in self.processes:
            if process.alive():
                assert process.terminate() == 0, process.log_path.read_text()[-3000:]


def start_pipeline(kafka: KafkaSettings, folder: Path, durations: list[str],
                   live_lag: str) -> Pipeline:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    topics = MarketsTopics.prefixed(prefix)
    ensure_topics(kafka, topics.specs(PARTITIONS), TopicSettings())
    pipeline = Pipeline(kafka, topics, prefix, folder, [])
    candles = pipeline.cli(["markets", "candles", *(a for d in durations for a in ("-d", d)),
                            "--grace", f"{GRACE_MS}ms", "--idle-timeout", f"{IDLE_MS}ms",
                            "--live-lag", live_lag, "--group", f"{prefix}candles"],
                           "candles.log").start()
    indicators = pipeline.cli(["markets", "indicators", "--group", f"{prefix}indicators"],
                              "indicators.log").start()
    pipeline.processes += [candles, indicators]
    for process in pipeline.processes:
        process.wait_for_log('"event": "assigned"', 1, timeout_s=120)
    return pipeline


def publish(pipeline: Pipeline, args: list[str], log: str) -> BraidProcess:
    return pipeline.cli(["trades", "publish", *args, "--no-progress"], log).start()


def wait_for_rows(kafka: KafkaSettings, topic: str, want: set[tuple[str, int, int]],
                  timeout_s: float = 120) -> None:
    """Until `topic` holds a row of every key in `want`, then a little more (a duplicate or a
    changed value would show)."""
    deadline = time.monotonic() + timeout_s
    got: set[tuple[str, int, int]] = set()
    while time.monotonic() < deadline:
        got = {(r["pair"], r["window_ms"], r["window_start_ms"])
               for r in (orjson.loads(v) for *_, v in read_topic(kafka, topic, settle_s=0.3)
                         if v is not None)}
        if want <= got:
            time.sleep(2)
            return
        time.sleep(0.5)
    raise TimeoutError(f"{topic} lacks {sorted(want - got)[:3]} ({len(want - got)} keys)")


def keys_of(table: pa.Table) -> set[tuple[str, int, int]]:
    return set(zip(*(table[k].to_pylist() for k in KEY), strict=True))


def backfill_from_kafka(spark: SparkSession, pipeline: Pipeline, durations: list[int],
                        span: tuple[int, int], output: Path) -> BackfillSummary:
    return run_backfill(spark, BackfillConfig(
        inputs=[], kafka=KafkaInput(pipeline.kafka.bootstrap_servers, pipeline.topics.trades),
        start=_day(span[0]), end=_day(span[1]) + timedelta(days=1), pairs=PAIRS,
        output=str(output), durations_ms=durations, grace_ms=GRACE_MS,
        arrival=ArrivalOrder.FILE, show_progress=False,
    ))


def _day(ms: int) -> Any:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def log_records(kafka: KafkaSettings, topic: str) -> list[tuple[int, int, int, bytes]]:
    """(partition, offset, Kafka timestamp, value) of every record of `topic`."""
    consumer = Consumer({**kafka.client_config(), "group.id": f"r{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    pending = set(meta.partitions)
    out: list[tuple[int, int, int, bytes]] = []
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.5):
            error = msg.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                pending.discard(msg.partition())
                continue
            out.append((int(msg.partition() or 0), int(msg.offset() or 0), msg.timestamp()[1],
                        msg.value() or b""))
    consumer.close()
    assert not pending, "the topic was not read to its end"
    return sorted(out)


def pauses_inside_windows(records: list[tuple[int, int, int, bytes]], over_ms: int) -> int:
    """How often a pair's next trade of the same minute reached Kafka more than `over_ms`
    after the previous one: each is a moment the pair was quiet for longer than that with a
    window open (what closed windows early before closure records)."""
    last: dict[str, tuple[int, int]] = {}
    count = 0
    for _, _, stamp, value in records:
        if is_closure(value):
            continue
        trade = orjson.loads(value)
        minute = trade["timestamp_ms"] // MINUTE
        before = last.get(trade["pair"])
        if before is not None and before[0] == minute and stamp - before[1] > over_ms:
            count += 1
        last[trade["pair"]] = (minute, stamp)
    return count


def closures_in(records: list[tuple[int, int, int, bytes]]) -> list[dict[str, Any]]:
    return [orjson.loads(v) for *_, v in records if is_closure(v)]


def dead_letters(kafka: KafkaSettings, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(v) for *_, v in read_topic(kafka, topic, settle_s=0.3) if v is not None]


# --- 1. history -------------------------------------------------------------------------------

def test_history_with_rate_limit_backoffs_and_replay_pauses_loses_nothing_and_batch_agrees(
    kafka_settings: KafkaSettings, spark: SparkSession, real_trades: dict[str, Trades],
    tmp_path: Path,
) -> None:
    pipeline = start_pipeline(kafka_settings, tmp_path, ["1m", "1h"], live_lag="1m")
    try:
        # a. REST: each pair paged by its own trades service, 50 trades a page, every third
        # request refused for the rate limit (2 s backoff), one request a second at most
        servers, rest = [], []
        for pair in PAIRS:
            rows, table = _slice(real_trades[pair], REST_SLICE)
            ids = table["trade_id"].to_pylist()
            rest_rows = [[r[1], r[2], r[0], r[3], r[4], r[5], str(i)]
                         for r, i in zip(rows, ids, strict=True)]
            server = KrakenRestServer(rest_rows, page_size=50, rate_limit_every=3).__enter__()
            servers.append(server)
            rest.append(publish(pipeline, ["-s", "kraken-rest", "-p", pair, "--url", server.url,
                                           "--close-windows-at-end"], f"rest-{pair[:3]}.log"))
        for process, server in zip(rest, servers, strict=True):
            assert process.proc is not None and process.proc.wait(180) == 0, (
                process.log_path.read_text()[-3000:])
            assert server.state.rate_limited >= 2
            server.__exit__()
        # b. the file replay of a later stretch, paced at 10x event time
        paths = []
        for pair in PAIRS:
            rows, _ = _slice(real_trades[pair], FILE_SLICE)
            path = tmp_path / f"{pair.replace('/', '')}_slice.csv"
            with path.open("w", newline="") as f:
                csv.writer(f).writerows([["time", "price", "volume", "buy_or_sell",
                                          "market_or_limit", "misc"], *rows])
            paths += ["-f", str(path)]
        replay = publish(pipeline, ["-s", "file", *paths, "--speedup", str(FILE_SPEEDUP),
                                    "--close-windows-at-end"], "file.log")
        assert replay.proc is not None and replay.proc.wait(180) == 0, (
            replay.log_path.read_text()[-3000:])

        everything = pa.concat_tables([_slice(real_trades[p], s)[1]
                                       for s in (REST_SLICE, FILE_SLICE) for p in PAIRS])
        want_candles, want_indicators = reference_outputs(everything, [MINUTE, HOUR], GRACE_MS)
        wait_for_rows(kafka_settings, pipeline.topics.candles, keys_of(want_candles))
        wait_for_rows(kafka_settings, pipeline.topics.indicators, keys_of(want_indicators))
    finally:
        pipeline.stop()

    records = log_records(kafka_settings, pipeline.topics.trades)
    # the arrival really paused inside windows for longer than the idle timeout
    assert pauses_inside_windows(records, over_ms=IDLE_MS + 200) >= 6
    # and yet nothing was closed on idle (history): only the two sources' ends are in the log
    assert sorted((c["closure"], c["pair"]) for c in closures_in(records)) == sorted(
        ("end_of_input", p) for p in PAIRS for _ in range(2))
    assert dead_letters(kafka_settings, pipeline.topics.dead_letter) == []

    stream_candles = read_candles(kafka_settings, pipeline.topics.candles)
    stream_indicators = read_indicators(kafka_settings, pipeline.topics.indicators)
    # every trade in its candle: the stream equals the features/ reference of all trades
    assert_identical(stream_candles, want_candles, CANDLE_FLOATS, "stream candles")
    assert_identical(stream_indicators, want_indicators, INDICATOR_FLOATS, "stream indicators")
    assert not np.isnan(stream_indicators["sma_10"].to_numpy()).all()

    summary = backfill_from_kafka(spark, pipeline, [MINUTE, HOUR],
                                  (REST_SLICE[0], FILE_SLICE[1]), tmp_path / "offline")
    assert summary.trades_valid == everything.num_rows and summary.rejected_rows == 0
    assert summary.late_trades == {"1m": 0, "1h": 0}
    batch_candles = read_sorted(str(tmp_path / "offline" / "candles"), CANDLE_ARROW_SCHEMA)
    batch_indicators = read_sorted(str(tmp_path / "offline" / "indicators"),
                                   INDICATOR_ARROW_SCHEMA)
    assert_identical(batch_candles, stream_candles, CANDLE_FLOATS, "candles")
    assert_identical(batch_indicators, stream_indicators, INDICATOR_FLOATS, "indicators")

    start = datetime.fromtimestamp(REST_SLICE[0] / 1000, UTC)
    compared = assert_served_rows_consistent(
        stream_candles, stream_indicators, tmp_path / "offline", tmp_path / "repo", start,
        start + timedelta(days=1), every_row=True)
    assert compared == stream_candles.num_rows + stream_indicators.num_rows


# --- 2. a WebSocket outage --------------------------------------------------------------------

def test_websocket_outage_past_the_idle_timeout_then_snapshot_drops_the_same_trades_in_both(
    kafka_settings: KafkaSettings, spark: SparkSession, real_trades: dict[str, Trades],
    tmp_path: Path,
) -> None:
    # live: the trades are a minute or two old when they arrive (within the live lag)
    pipeline = start_pipeline(kafka_settings, tmp_path, ["1m"], live_lag="5m")
    now = int(time.time() * 1000)
    m0 = now - now % MINUTE  # W1 = [m0 - 2 min, m0 - 1 min), W2 = [m0 - 1 min, m0), W3 = [m0, ..)
    shift = (m0 - 2 * MINUTE) - WS_SOURCE_START
    parts: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for pair in PAIRS:
        _, table = _slice(real_trades[pair], (WS_SOURCE_START, WS_SOURCE_START + 3 * MINUTE))
        rows = [{**r, "timestamp_ms": r["timestamp_ms"] + shift} for r in table.to_pylist()]
        w2 = m0 - MINUTE
        parts[pair] = {
            "before": [r for r in rows if r["timestamp_ms"] < w2 + 30_000],  # W1, W2's 1st half
            "outage": [r for r in rows if w2 + 30_000 <= r["timestamp_ms"] < m0],
            "after": [r for r in rows if r["timestamp_ms"] >= m0],
        }
        assert all(len(v) >= 3 for v in parts[pair].values()), (pair, parts[pair])
        assert any(r["timestamp_ms"] >= w2 for r in parts[pair]["before"])  # W2 is open

    def frame(kind: str, rows: list[dict[str, Any]]) -> str:
        return v2_trade_frame(kind, [v2_trade(r["pair"], r["trade_id"], r["timestamp_ms"] * 1000,
                                              r["price"], r["volume"], r["side"],
                                              r["order_type"]) for r in rows])

    acks = [v2_subscribe_ack(p) for p in PAIRS]
    # connection 1: the snapshot of recent trades, then updates; then the connection is lost
    first = [*acks, *(frame("snapshot", parts[p]["before"][:5]) for p in PAIRS),
             *(frame("update", [r]) for p in PAIRS for r in parts[p]["before"][5:])]
    # connection 2: no trade (heartbeats only) until the test says go, once the stream closed
    # the quiet minute on idle; then v2's snapshot of the last 50 trades (repeats and the
    # outage's trades), updates of the next minute
    second = [*acks, WAIT,
              *(frame("snapshot", (parts[p]["before"] + parts[p]["outage"])[-50:])
                for p in PAIRS),
              *(frame("update", [r]) for p in PAIRS for r in parts[p]["after"]), HOLD]
    total = sum(len(v) for p in PAIRS for v in parts[p].values())
    try:
        with KrakenWsServer([first, second]) as server:
            source = publish(pipeline, ["-s", "kraken-ws", "--url", server.url,
                                        *(a for p in PAIRS for a in ("-p", p)),
                                        "--count", str(total), "--close-windows-at-end"],
                             "ws.log")
            deadline = time.monotonic() + 90
            idle: list[dict[str, Any]] = []
            while len({c["pair"] for c in idle}) < len(PAIRS):
                assert time.monotonic() < deadline, "the quiet pairs were not closed on idle"
                time.sleep(0.5)
                idle = [c for c in closures_in(log_records(kafka_settings,
                                                           pipeline.topics.trades))
                        if c["closure"] == "idle"]
            server.go()
            assert source.proc is not None and source.proc.wait(120) == 0, (
                source.log_path.read_text()[-3000:])
        want = {(p, MINUTE, m0 + k * MINUTE) for p in PAIRS for k in (-2, -1, 0)}
        wait_for_rows(kafka_settings, pipeline.topics.candles, want)
        wait_for_rows(kafka_settings, pipeline.topics.indicators, want)
    finally:
        pipeline.stop()

    # the idle closures closed W2 (and only it) of each pair, before the outage's trades came
    assert sorted((c["pair"], c["window_ms"], c["through_ms"]) for c in idle) == [
        (p, MINUTE, m0 - 1) for p in sorted(PAIRS)]
    letters = dead_letters(kafka_settings, pipeline.topics.dead_letter)
    outage_ids = {(r["pair"], r["trade_id"]) for p in PAIRS for r in parts[p]["outage"]}
    assert {(orjson.loads(d["value"])["pair"], orjson.loads(d["value"])["trade_id"])
            for d in letters} == outage_ids
    assert all(d["reason"].startswith("closed on idle: the pair's 1m window was closed by the "
                                      "closure record at offset ") for d in letters)

    stream_candles = read_candles(kafka_settings, pipeline.topics.candles)
    stream_indicators = read_indicators(kafka_settings, pipeline.topics.indicators)
    counts = {(r["pair"], r["window_start_ms"]): r["trade_count"]
              for r in stream_candles.to_pylist()}
    for pair in PAIRS:  # W2 holds the trades that came before the outage only
        assert counts[(pair, m0 - MINUTE)] == sum(
            r["timestamp_ms"] >= m0 - MINUTE for r in parts[pair]["before"])

    summary = backfill_from_kafka(spark, pipeline, [MINUTE], (m0 - 2 * MINUTE, m0 + MINUTE),
                                  tmp_path / "offline")
    assert summary.trades_valid == total and summary.rejected_rows == 0
    # the batch drops exactly the trades the stream dead-lettered, by the same closure records
    assert summary.late_trades == {"1m": len(outage_ids)}
    batch_candles = read_sorted(str(tmp_path / "offline" / "candles"), CANDLE_ARROW_SCHEMA)
    batch_indicators = read_sorted(str(tmp_path / "offline" / "indicators"),
                                   INDICATOR_ARROW_SCHEMA)
    assert_identical(batch_candles, sort_rows(stream_candles), CANDLE_FLOATS, "candles")
    assert_identical(batch_indicators, sort_rows(stream_indicators), INDICATOR_FLOATS,
                     "indicators")
    start = datetime.fromtimestamp((m0 - 2 * MINUTE) / 1000, UTC)
    compared = assert_served_rows_consistent(
        stream_candles, stream_indicators, tmp_path / "offline", tmp_path / "repo", start,
        start + timedelta(hours=1), every_row=True)
    assert compared == stream_candles.num_rows + stream_indicators.num_rows

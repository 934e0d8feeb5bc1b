"""Hostile inputs through the real processors on Apache Kafka, checked on the dead-letter topic
itself. The generated mixes of the in-process suite (`tests/unit/reliability/strategies.py`) go
through a plain confluent-kafka producer, with null, empty and wrong keys among them, into the
input topics of running candle, indicator, sensor-window, sensor-join and archive processors.
Valid records carry their entity's key, as producers key them (the pair, the candle's record
key, the client); a few valid records are produced without it (no key, an empty one, another
record's) and must be dead-lettered for it (`key:`): they are not on their entity's partition.
Hostile records carry any key:

(a) every invalid record is on the dead-letter topic exactly once, with a reason, its topic,
    partition, offset, key and value;
(b) no valid record is;
(c) a single-topic processor emits what the valid records make (candles; features); the archive
    holds every record, valid or not, once and byte for byte (the batch layer judges them);
(d) the processor is alive: records produced after the mix still give their output.

Every message carries the producer's timestamp `INGEST_MS`, so the event-time skew rule judges
the records as the in-process suite does. Each mix holds every hostile kind of its formats once
(`strategies.garbage_records` and the formats' mutations) among valid records drawn from a seeded
generator; the in-process suite searches hundreds of generated mixes.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from features.schemas.candle import record_key
from features.schemas.window_closure import ClosureRule, WindowClosure
from features.sensors.schemas import FEATURES
from streaming.partitioning import partition_for
from streaming.pipelines.markets import MarketsTopics, candle_processor, indicator_processor
from streaming.pipelines.sensors import (
    SensorTopics,
    archive_processor,
    join_processor,
    window_processor,
)
from streaming.runtime.processor import StreamProcessor
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.sinks.gcs_parquet_archive import read_archive
from streaming.sinks.object_store import LocalStore
from streaming.topics import TopicSpec, ensure_topics
from tests.support.reliability_report import record_hostile
from tests.unit.reliability import strategies as s
from tests.unit.reliability.strategies import INGEST_MS, SPAN_MS, T0, Mutation, Wire
from tests.unit.reliability.test_hostile_inputs import (
    MODEL,
    WINDOWS,
    expected_candles,
    expected_features,
    expected_indicators,
    expected_predictions,
)

pytestmark = [pytest.mark.integration]

SEED = 10
KEYS = [b"right-key", b"", None, b"\xff\xfe", b"x" * 300]
VALID_PER_MIX = 40
Tagged = tuple[str, Wire]
Mix = list[tuple[Tagged, bytes | None]]


@dataclass(frozen=True)
class Sent:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    wire: Wire


# --- the mixes: valid records drawn at random, every hostile kind of the format once ----------

def _trade(rng: random.Random) -> dict[str, Any]:
    return {"v": 1, "pair": rng.choice(s.PAIRS),
            "price": rng.choice([rng.uniform(1e-6, 1e5), 1e100, 5e-324]),
            "volume": rng.choice([rng.uniform(1e-6, 1e3), 1e100]),
            "side": rng.choice(["buy", "sell", "unknown"]),
            "order_type": rng.choice(["market", "limit", "unknown"]),
            "trade_id": rng.randrange(10**6), "timestamp_ms": T0 + rng.randrange(SPAN_MS)}


def _candle(rng: random.Random) -> dict[str, Any]:
    size = rng.choice(s.CANDLE_SIZES)
    start = T0 + rng.randrange(7) * size  # a handful of windows: duplicates and disorder
    row: dict[str, Any] = {"pair": rng.choice(s.PAIRS), "window_ms": size,
                           "window_start_ms": start, "window_end_ms": start + size}
    for name in s.CANDLE_FLOATS:
        row[name] = rng.uniform(1e-3, 1e5)
    row["trade_count"] = rng.randrange(1, 1000)
    return row


def _reading(sensor: str) -> Callable[[random.Random], dict[str, Any]]:
    def row(rng: random.Random) -> dict[str, Any]:
        value = rng.uniform(-1e6, 1e6) if sensor == "SZ" else rng.randrange(10)
        return {"v": 1, "client": rng.choice(s.CLIENTS),
                "timestamp_ms": T0 + rng.randrange(SPAN_MS), "value": value}
    return row


def _feature(name: str) -> Callable[[random.Random], dict[str, Any]]:
    def row(rng: random.Random) -> dict[str, Any]:
        return {"v": 1, "client": rng.choice(s.CLIENTS), "feature": name,
                "timestamp_ms": T0 + rng.randrange(SPAN_MS), "value": rng.uniform(-1e3, 1e3),
                "bin": rng.randrange(10), "edges_version": "e1", "window_ms": 600_000,
                "count": rng.randrange(1, 500)}
    return row


def _encoded(rng: random.Random, row: dict[str, Any]) -> Wire:
    """A valid record in one of its valid encodings."""
    return rng.choice([
        s.ok("valid", row),
        s.ok("valid_keys_reversed", row, s.encode(dict(reversed(list(row.items()))))),
        s.ok("valid_padded_whitespace", row, b" \t" + s.encode(row) + b"\r\n"),
    ])


def _every_hostile(topic: str, base: dict[str, Any], mutations: Sequence[Mutation]
                   ) -> list[Tagged]:
    """Every garbage kind and every mutation of the format, once each."""
    wires = s.garbage_records(s.encode(base)) + [s.mutate(base, m) for m in mutations]
    return [(topic, w) for w in wires]


def _entity_key(topic: str, row: dict[str, Any]) -> bytes:
    """The key producers give a record of `topic`: its pair, its record key, its client."""
    if topic == "trades":
        return str(row["pair"]).encode()
    if topic == "candles":
        return record_key(row["pair"], row["window_ms"], row["window_start_ms"]).encode()
    return str(row["client"]).encode()


def _mix(rng: random.Random, valid: dict[str, Callable[[random.Random], dict[str, Any]]],
         hostile: list[Tagged]) -> Mix:
    """`VALID_PER_MIX` valid records over the topics of `valid` (some repeated verbatim) with
    their entity's key, three valid ones without it (null, empty, another record's key: to be
    dead-lettered), and the hostile ones with a key drawn from `KEYS` (null, empty, not UTF-8,
    long); shuffled."""
    topics = sorted(valid)
    good = [(t, _encoded(rng, valid[t](rng))) for t in rng.choices(topics, k=VALID_PER_MIX)]
    misplaced = [(t, replace(w, kind=kind, valid=False, row=None, key=key))
                 for (t, w), (kind, key) in zip(rng.sample(good, 3), (
                     ("null_key", None), ("empty_key", b""), ("foreign_key", s.FOREIGN_KEY)),
                     strict=True)]
    items = good + rng.sample(good, 5) + misplaced + hostile
    rng.shuffle(items)

    def key(topic: str, wire: Wire) -> bytes | None:
        if wire.key is not s.ENTITY_KEY:
            return wire.key
        return _entity_key(topic, wire.row) if wire.row else rng.choice(KEYS)

    return [(item, key(*item)) for item in items]


def _one_partition(specs: list[TopicSpec]) -> list[TopicSpec]:
    """One partition per topic (so every record meets the same operator, in order) and no
    retention: the records carry the strategies' 2026-01-01 timestamps."""
    return [replace(spec, partitions=1, retention_ms=-1) for spec in specs]


def _produce(kafka: KafkaSettings, names: dict[str, str],
             mix: Sequence[tuple[Tagged, bytes | None]]) -> list[Sent]:
    """Produce `mix` in order (logical topic -> real topic by `names`); where each landed."""
    producer = Producer({**kafka.client_config(), "enable.idempotence": True,
                         "message.max.bytes": 2_000_000})
    sent: list[Sent | None] = [None] * len(mix)
    errors: list[str] = []

    def landed(i: int, key: bytes | None, wire: Wire) -> Callable[[Any, Any], None]:
        def report(error: Any, message: Any) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                sent[i] = Sent(message.topic(), message.partition(), message.offset(), key, wire)
        return report

    for i, ((topic, wire), key) in enumerate(mix):
        producer.produce(names[topic], value=wire.value, key=key, partition=0,
                         timestamp=INGEST_MS, on_delivery=landed(i, key, wire))
        producer.poll(0)
    assert producer.flush(30) == 0 and not errors, errors
    return [x for x in sent if x is not None]


def _close_input(kafka: KafkaSettings, topic: str, rows: Sequence[dict[str, Any]]) -> None:
    """An end-of-input closure record per pair of `rows` through its latest event time, after
    them on partition 0 (`features.schemas.window_closure`)."""
    latest: dict[str, int] = {}
    for row in rows:
        latest[row["pair"]] = max(latest.get(row["pair"], 0), int(row["timestamp_ms"]))
    producer = Producer(kafka.client_config())
    for pair, through in sorted(latest.items()):
        producer.produce(topic, key=pair.encode(), partition=0, timestamp=INGEST_MS,
                         value=WindowClosure(closure=ClosureRule.END_OF_INPUT, pair=pair,
                                             through_ms=through).to_wire())
    assert producer.flush(30) == 0


def _letters(kafka: KafkaSettings, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(v) for _, _, _, v in read_topic(kafka, topic, settle_s=0.3)
            if v is not None]


def _raw(text: str | None) -> bytes | None:
    if text is None:
        return None
    if text.startswith("base64:"):
        return base64.b64decode(text[7:])
    return text.encode("utf-8")


def _wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(0.5)


def check_dead_letter_topic(name: str, kafka: KafkaSettings, topic: str,
                            sent: Sequence[Sent]) -> list[dict[str, Any]]:
    """(a) and (b) on the topic: waits until a letter came for every invalid record, then
    checks each letter against what was produced at its place."""
    invalid = [x for x in sent if not x.wire.valid]
    letters: list[dict[str, Any]] = []

    def arrived() -> bool:
        letters[:] = _letters(kafka, topic)
        return len(letters) >= len(invalid)

    _wait_for(f"{len(invalid)} dead letters", arrived)
    time.sleep(1)  # a duplicate letter would come now
    letters = _letters(kafka, topic)
    by_place = {(x.topic, x.partition, x.offset): x for x in sent}
    seen = Counter((d["topic"], d["partition"], d["offset"]) for d in letters)
    for letter in letters:
        place = (letter["topic"], letter["partition"], letter["offset"])
        x = by_place.get(place)
        assert x is not None, f"a dead letter for a record never produced: {place}"
        assert not x.wire.valid, f"valid {x.wire.kind} record dead-lettered: {letter['reason']}"
        assert isinstance(letter["reason"], str) and letter["reason"].strip()
        assert _raw(letter["value"]) == x.wire.value, f"{x.wire.kind}: value differs"
        assert _raw(letter["key"]) == x.key, f"{x.wire.kind}: key differs"
        assert letter["processor"]
    for x in invalid:
        assert seen[(x.topic, x.partition, x.offset)] == 1, (
            f"invalid {x.wire.kind} at {x.topic}/{x.offset}: "
            f"{seen[(x.topic, x.partition, x.offset)]} letters")
    record_hostile(f"{name} (process)", [x.wire.kind for x in sent],
                   [d["reason"] for d in letters])
    return letters


@contextmanager
def running(processor: StreamProcessor) -> Iterator[StreamProcessor]:
    thread = threading.Thread(target=processor.run, kwargs={"install_signals": False},
                              daemon=True)
    thread.start()
    try:
        yield processor
    finally:
        processor.stop()
        thread.join(30)
        assert not thread.is_alive(), "the processor did not stop"


def _read_values(kafka: KafkaSettings, topics: Sequence[str]) -> list[tuple[str, bytes | None,
                                                                          dict[str, Any]]]:
    out = []
    for topic in topics:
        out += [(topic, key, orjson.loads(value))
                for _, _, key, value in read_topic(kafka, topic, settle_s=0.3)
                if value is not None]
    return out


# --- candles ----------------------------------------------------------------------------------

def test_the_candle_processor_dead_letters_every_hostile_trade_on_the_topic(
        kafka_settings: KafkaSettings,
        unique_topic_prefix: str) -> None:
    rng = random.Random(SEED)
    mix = _mix(rng, {"trades": _trade},
               _every_hostile("trades", _trade(rng), s.TRADE_MUTATIONS))
    topics = MarketsTopics.prefixed(unique_topic_prefix)
    ensure_topics(kafka_settings, _one_partition(topics.specs(1)), TopicSettings())
    processor = candle_processor(kafka_settings, WINDOWS, topics=topics, idle_timeout_ms=2_000,
                                 group=f"{unique_topic_prefix}candles", poll_timeout_s=0.05)
    with running(processor):
        sent = _produce(kafka_settings, {"trades": topics.trades}, mix)
        check_dead_letter_topic("candles", kafka_settings, topics.dead_letter, sent)
        want = expected_candles([x.wire.row for x in sent if x.wire.valid and x.wire.row])

        def candles() -> Counter[str]:
            got: Counter[str] = Counter()
            for _, key, value in _read_values(kafka_settings, [topics.candles]):
                assert key is not None and key.decode() not in got, f"candle {key!r} twice"
                got[key.decode()] = value["trade_count"]
            return got

        # the mix's event times lie minutes behind its ingestion time (history for most
        # pairs): its end is said in the log, so every window closes
        _close_input(kafka_settings, topics.trades, [x.wire.row for x in sent
                                                     if x.wire.valid and x.wire.row])
        _wait_for("the mix's candles", lambda: candles() == want)  # (c), windows closed

        # (d) a known pair and a new one, a window later
        later = [{"v": 1, "pair": pair, "price": 2.0, "volume": 1.0, "side": "buy",
                  "order_type": "limit", "trade_id": 1, "timestamp_ms": T0 + 2 * SPAN_MS}
                 for pair in (s.PAIRS[0], "NEW/USD")]
        _produce(kafka_settings, {"trades": topics.trades},
                 [(("trades", s.ok("valid", r)), _entity_key("trades", r)) for r in later])
        want += expected_candles(later)
        _close_input(kafka_settings, topics.trades, later)
        _wait_for("the later trades' candles", lambda: candles() == want)
    assert len(_letters(kafka_settings, topics.dead_letter)) == sum(not x.wire.valid
                                                                    for x in sent)


def test_trades_off_their_pairs_partition_are_dead_lettered_not_split_into_two_candles(
        kafka_settings: KafkaSettings, unique_topic_prefix: str) -> None:
    """Through real partitions: XBT/USD trades keyed by their pair sit on the pair's partition
    (`partition_for`, Braid's producers' rule); one produced with the key of ETH/USD sits on
    ETH/USD's partition, and ones without a key wherever librdkafka's partitioner puts them.
    One candle processor reads every partition: each window gets one candle of exactly the
    rightly keyed trades, and the others are dead-lettered with the `key:` reason (without
    the check, the ETH/USD partition's operator emitted a second `XBT/USD|60000|...` candle)."""
    partitions = 4
    topics = MarketsTopics.prefixed(unique_topic_prefix)
    ensure_topics(kafka_settings, [replace(spec, partitions=partitions, retention_ms=-1)
                                   for spec in topics.specs(partitions)], TopicSettings())
    home, other = (partition_for(p, partitions) for p in ("XBT/USD", "ETH/USD"))
    assert home != other  # the foreign key really sends the trade elsewhere

    def trade(i: int) -> bytes:
        return orjson.dumps({"v": 1, "pair": "XBT/USD", "price": 100.0 + i, "volume": 1.0,
                             "side": "buy", "order_type": "limit", "trade_id": i,
                             "timestamp_ms": T0 + 1_000 * i})

    producer = Producer({**kafka_settings.client_config(), "enable.idempotence": True})
    for i in range(3):
        producer.produce(topics.trades, key="XBT/USD", value=trade(i), partition=home,
                         timestamp=INGEST_MS)
    producer.produce(topics.trades, key="ETH/USD", value=trade(10), partition=other,
                     timestamp=INGEST_MS)
    for i in range(20, 28):  # no key: librdkafka spreads them over the partitions
        producer.produce(topics.trades, value=trade(i), timestamp=INGEST_MS)
    # the end of this history, on the pair's partition: its windows close
    producer.produce(topics.trades, key="XBT/USD", partition=home, timestamp=INGEST_MS,
                     value=WindowClosure(closure=ClosureRule.END_OF_INPUT, pair="XBT/USD",
                                         through_ms=T0 + 27_000).to_wire())
    assert producer.flush(30) == 0

    processor = candle_processor(kafka_settings, WINDOWS, topics=topics, idle_timeout_ms=2_000,
                                 group=f"{unique_topic_prefix}candles", poll_timeout_s=0.05)
    with running(processor):
        def candles() -> list[tuple[bytes | None, int, int]]:
            return [(key, value["trade_count"], value["window_ms"]) for _, key, value in
                    _read_values(kafka_settings, [topics.candles])]

        want = sorted((record_key("XBT/USD", w.size_ms, T0).encode(), 3, w.size_ms)
                      for w in WINDOWS)
        _wait_for("the XBT/USD candles", lambda: sorted(candles()) == want)
        _wait_for("9 dead letters",
                  lambda: len(_letters(kafka_settings, topics.dead_letter)) >= 9)
        time.sleep(2)  # a second candle for a window, or a duplicate letter, would come now
        assert sorted(candles()) == want
        letters = _letters(kafka_settings, topics.dead_letter)
    assert len(letters) == 9
    assert {d["partition"] for d in letters} - {home} and all(
        d["reason"].startswith("key: ") for d in letters), letters
    assert sum(d["key"] is None for d in letters) == 8


# --- indicators -------------------------------------------------------------------------------

def test_the_indicator_processor_dead_letters_every_hostile_candle_on_the_topic(
        kafka_settings: KafkaSettings, unique_topic_prefix: str) -> None:
    rng = random.Random(SEED)
    mix = _mix(rng, {"candles": _candle},
               _every_hostile("candles", _candle(rng), s.CANDLE_MUTATIONS))
    # the candles topic is compacted: the broker itself refuses a record without a key
    mix = [(item, b"" if key is None else key) for item, key in mix]
    topics = MarketsTopics.prefixed(unique_topic_prefix)
    ensure_topics(kafka_settings, _one_partition(topics.specs(1)), TopicSettings())
    processor = indicator_processor(kafka_settings, topics=topics,
                                    group=f"{unique_topic_prefix}indicators")
    with running(processor):
        sent = _produce(kafka_settings, {"candles": topics.candles}, mix)
        check_dead_letter_topic("indicators", kafka_settings, topics.dead_letter, sent)
        rows = [x.wire.row for x in sent if x.wire.valid and x.wire.row]
        want = expected_indicators(rows)

        def indicators() -> Counter[tuple[str, float]]:
            got: Counter[tuple[str, float]] = Counter()
            for _, key, value in _read_values(kafka_settings, [topics.indicators]):
                assert key is not None
                got[(key.decode(), float(value["close"]))] += 1
            return got

        _wait_for("the mix's indicator rows", lambda: indicators() == want)

        # (d) the next candle of a known pair
        last = max(r["window_start_ms"] for r in rows
                   if (r["pair"], r["window_ms"]) == (s.PAIRS[0], s.CANDLE_SIZES[0]))
        size = s.CANDLE_SIZES[0]
        candle = {**_candle(rng), "pair": s.PAIRS[0], "window_ms": size,
                  "window_start_ms": last + size, "window_end_ms": last + 2 * size}
        _produce(kafka_settings, {"candles": topics.candles},
                 [(("candles", s.ok("valid", candle)), _entity_key("candles", candle))])
        want += expected_indicators([candle])
        _wait_for("the next candle's indicators", lambda: indicators() == want)


# --- sensor windows ---------------------------------------------------------------------------

def test_the_sensor_window_processor_dead_letters_every_hostile_reading_on_the_topic(
        kafka_settings: KafkaSettings,
        unique_topic_prefix: str) -> None:
    rng = random.Random(SEED)
    mix = _mix(rng, {"SZ": _reading("SZ")},
               _every_hostile("SZ", _reading("SZ")(rng), s.reading_mutations("SZ")))
    topics = SensorTopics.prefixed(unique_topic_prefix)
    ensure_topics(kafka_settings, _one_partition(topics.specs(1)), TopicSettings())
    processor = window_processor(kafka_settings, grace_ms=SPAN_MS, topics=topics,
                                 group=f"{unique_topic_prefix}windows", poll_timeout_s=0.05)
    feature_topics = [topics.of(f) for f in FEATURES]
    with running(processor):
        sent = _produce(kafka_settings, {"SZ": topics.SZ}, mix)
        check_dead_letter_topic("sensor_windows", kafka_settings, topics.dead_letter, sent)
        want = expected_features([x.wire.row for x in sent if x.wire.valid and x.wire.row])

        def features() -> set[tuple[str, str, int]]:
            got: set[tuple[str, str, int]] = set()  # a correction repeats a key
            for _, _, value in _read_values(kafka_settings, feature_topics):
                assert value["count"] >= 1 and 0 <= value["bin"] <= 9
                got.add((value["feature"], value["client"], value["timestamp_ms"]))
            return got

        _wait_for("the mix's features", lambda: features() == want)

        later = [{"v": 1, "client": client, "timestamp_ms": T0 + 2 * SPAN_MS, "value": 1.0}
                 for client in (s.CLIENTS[0], "new")]
        _produce(kafka_settings, {"SZ": topics.SZ},
                 [(("SZ", s.ok("valid", r)), _entity_key("SZ", r)) for r in later])
        want |= expected_features(later)
        _wait_for("the later readings' features", lambda: features() == want)


# --- sensor join ------------------------------------------------------------------------------

def test_the_sensor_join_processor_dead_letters_every_hostile_event_on_the_topic(
        kafka_settings: KafkaSettings,
        unique_topic_prefix: str) -> None:
    """Five input topics: however the consumer interleaves them, (c) every event's final
    prediction is the rule's vector (`expected_predictions`, by brute force), and (d) a new
    client's five fields give its events their predictions."""
    rng = random.Random(SEED)
    makers = {"SX": _reading("SX"), "SY": _reading("SY"),
              **{f: _feature(f) for f in FEATURES}}
    hostile = [h for t in ("SX", "SY") for h in _every_hostile(t, makers[t](rng),
                                                               s.reading_mutations(t))]
    hostile += [h for f in FEATURES for h in _every_hostile(f, makers[f](rng),
                                                            s.feature_mutations(f))]
    mix = _mix(rng, makers, hostile)
    topics = SensorTopics.prefixed(unique_topic_prefix)
    ensure_topics(kafka_settings, _one_partition(topics.specs(1)), TopicSettings())
    names = {n: topics.of(n) for n in ("SX", "SY", *FEATURES)}
    processor = join_processor(kafka_settings, model=MODEL, grace_ms=SPAN_MS, topics=topics,
                               group=f"{unique_topic_prefix}join", poll_timeout_s=0.05)
    with running(processor):
        sent = _produce(kafka_settings, names, mix)
        check_dead_letter_topic("sensor_join", kafka_settings, topics.dead_letter, sent)
        field_of = {real: name for name, real in names.items()}
        records = [(field_of[x.topic], x.wire) for x in sent]
        final: list[tuple[Tagged, bytes | None]] = [
            ((t, s.ok("valid", {"v": 1, "client": "final", "timestamp_ms": T0, "value": 3})),
             b"final") for t in ("SX", "SY")]
        final += [((t, s.ok("valid", {"v": 1, "client": "final", "feature": t,
                                      "timestamp_ms": T0, "value": 0.5, "bin": 4,
                                      "edges_version": "e1", "window_ms": 600_000,
                                      "count": 2})), b"final") for t in FEATURES]
        _produce(kafka_settings, names, final)
        records += [(topic, wire) for (topic, wire), _ in final]
        want = expected_predictions(records)
        assert {k: v for k, v in want.items() if k.startswith("final|")} == {
            f"final|{T0}|{t}": (3, 3, 4, 4, 4) for t in ("SX", "SY", "SZ")}

        def predictions() -> dict[str, tuple[int, ...]]:
            got: dict[str, tuple[int, ...]] = {}
            for _, key, p in _read_values(kafka_settings, [topics.predictions]):
                name = f"{p['client']}|{p['timestamp_ms']}|{p['trigger']}"
                assert key == name.encode()
                got[name] = tuple(p["vector"])  # topic order: the last is the final one
            return got

        _wait_for("every event's final prediction", lambda: predictions() == want)


# --- archive ----------------------------------------------------------------------------------

def test_the_archive_keeps_every_record_hostile_ones_included_once_and_byte_for_byte(
        kafka_settings: KafkaSettings,
        unique_topic_prefix: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    hostile = [h for t in ("SZ", "SX") for h in _every_hostile(t, _reading(t)(rng),
                                                               s.reading_mutations(t))]
    mix = _mix(rng, {"SZ": _reading("SZ"), "SX": _reading("SX")}, hostile)
    topics = SensorTopics.prefixed(unique_topic_prefix)
    ensure_topics(kafka_settings, _one_partition(topics.specs(1)), TopicSettings())
    names = {"SZ": topics.SZ, "SX": topics.SX}
    root = str(tmp_path / "archive")
    processor = archive_processor(kafka_settings, root, topics=topics, max_rows=1_000,
                                  max_age_s=0.3, group=f"{unique_topic_prefix}archive")
    store = LocalStore(root)

    def archived(topic: str) -> list[tuple[int, bytes | None]]:
        table = read_archive(store, topic)
        if not table.num_rows:
            return []
        return list(zip(table["offset"].to_pylist(), table["message"].to_pylist(), strict=True))

    with running(processor):
        sent = _produce(kafka_settings, names, mix)
        for topic in names.values():
            want = sorted((x.offset, x.wire.value) for x in sent if x.topic == topic)

            def complete(topic: str = topic, count: int = len(want)) -> bool:
                return len(archived(topic)) >= count

            _wait_for(f"{topic} archived", complete)
            assert archived(topic) == want  # once each, in offset order, the very bytes
        later = [(("SZ", s.ok("valid", {"v": 1, "client": "c0", "timestamp_ms": T0 + 1,
                                         "value": 1.0})), b"c0")]
        tail = _produce(kafka_settings, names, later)
        _wait_for("a later reading archived",
                  lambda: any(o == tail[0].offset for o, _ in archived(topics.SZ)))
    assert _letters(kafka_settings, topics.dead_letter) == []
    record_hostile("archive (process)", [x.wire.kind for x in sent], [], keeps_all=True)

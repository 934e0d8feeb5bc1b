"""The online sink on the streaming runtime: a real broker, its own consumer group."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cli.online_sink import sink_kinds
from features.indicators import INDICATOR_COLUMNS
from streaming.partitioning import partition_for
from streaming.runtime.clients import make_producer
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.sinks.online_store import online_sink_processor
from streaming.topics import CHECKPOINTS, DEAD_LETTER, catalogue, ensure_topics
from tests.integration.serving.offline_tables import local_repo

pytestmark = pytest.mark.integration

PREFIX = "sinktest."
PARTITIONS = 4


def test_sink_processor_writes_the_newest_rows_and_dead_letters_bad_ones(
        tmp_path: Path, offline_root: Path, market_tables: tuple[pa.Table, pa.Table],
        kafka_settings: KafkaSettings) -> None:
    kinds = sink_kinds(["markets"], PREFIX)
    specs = [replace(s, name=PREFIX + s.name,
                     partitions=PARTITIONS if PREFIX + s.name in kinds else s.partitions)
             for s in catalogue() if PREFIX + s.name in kinds
             or s.name in (DEAD_LETTER, CHECKPOINTS)]
    ensure_topics(kafka_settings, specs, TopicSettings())
    indicators = market_tables[1]
    minute = indicators.filter(pc.equal(indicators["window_ms"], 60_000))
    producer = make_producer(kafka_settings)
    topic = PREFIX + "technical_indicators"
    rows = minute.to_pylist()
    for row in rows:
        body = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        producer.produce(topic, key=row["pair"], value=orjson.dumps(body),
                         partition=partition_for(row["pair"], PARTITIONS))
        producer.poll(0)
    producer.produce(topic, key="XBT/USD", value=b"not json",
                     partition=partition_for("XBT/USD", PARTITIONS))
    assert producer.flush(30) == 0
    store = local_repo(tmp_path / "repo", offline_root)
    online_sink_processor(kafka_settings, store, kinds, group=PREFIX + "online-sink",
                          dead_letter_topic=PREFIX + DEAD_LETTER,
                          checkpoint_topic=PREFIX + CHECKPOINTS).run(
        max_idle_s=3, install_signals=False)
    for pair in ("XBT/USD", "ETH/USD"):
        last = [r for r in rows if r["pair"] == pair][-1]
        online = store.get_online_features(
            features=[f"indicators_1m:{c}" for c in ("window_start_ms", *INDICATOR_COLUMNS)],
            entity_rows=[{"pair": pair}]).to_dict()
        assert online["window_start_ms"] == [last["window_start_ms"]]
        for column in INDICATOR_COLUMNS:
            assert online[column][0] == pytest.approx(last[column], abs=1e-9, nan_ok=True)
    letters = [orjson.loads(v) for _, _, _, v in read_topic(kafka_settings, PREFIX + DEAD_LETTER)
               if v is not None]
    assert len(letters) == 1
    assert "decode: not JSON" in str(letters[0])

"""The Parquet archive on a local GCS emulator: atomic objects partitioned by topic and date,
and no message lost or duplicated across restarts (an interrupted flush, and kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from features.sensors.schemas import READING_WIRE_SCHEMA
from features.sensors.simulator import SimulatorConfig, simulate
from streaming.pipelines.sensors import SensorTopics, produce_events, reading_message
from streaming.runtime.records import InputBatch
from streaming.runtime.topic_reader import read_topic
from streaming.settings import TopicSettings
from streaming.sinks.gcs_parquet_archive import ArchiveConfig, ArchiveOperator, read_archive
from streaming.sinks.object_store import GcsStore
from streaming.topics import ensure_topics
from tests.support.history_checker import compare_history
from tests.support.reliability_report import record_faults

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DAY_MS = 86_400_000


def _batch(topic: str, rows: list[tuple[str, int, float]], first: int) -> InputBatch:
    return InputBatch(topic, 3, np.arange(first, first + len(rows), dtype=np.int64),
                      [c.encode() for c, _, _ in rows],
                      [reading_message(c, t, v, "SZ") for c, t, v in rows])


def test_an_interrupted_flush_is_redone_under_the_same_names(gcs_emulator, tmp_path) -> None:
    store = GcsStore(f"gs://{gcs_emulator.bucket}/{tmp_path.name}-unit")
    config = ArchiveConfig({"SZ": READING_WIRE_SCHEMA}, max_rows=6, max_age_s=3600)
    t0 = 1_767_225_600_000 - 3 * 60_000  # the rows straddle midnight: two dates per flush
    rows = [("c1", t0 + i * 30_000, float(i)) for i in range(15)]

    first = ArchiveOperator(config, store, partition=3)
    first.process(_batch("SZ", rows[:9], 0), 0)  # flushes [0, 8]
    names = store.list("topic=SZ/")
    assert names == [
        "topic=SZ/date=2025-12-31/part-003-00000000000000000000-00000000000000000008.parquet",
        "topic=SZ/date=2026-01-01/part-003-00000000000000000000-00000000000000000008.parquet",
    ]
    # crash: the commit of offset 9 never happened. The restart resumes at 0 with other
    # batch boundaries, and must rewrite [0, 8] exactly, not an overlapping range.
    again = ArchiveOperator(config, store, partition=3)
    again.process(_batch("SZ", rows[:4], 0), 0)
    again.process(_batch("SZ", rows[4:14], 4), 0)
    assert again.commit_offset("SZ") == 9  # [9, 13] still buffered: nothing past it committed
    again.process(_batch("SZ", rows[14:], 14), 0)  # 6 buffered: flush [9, 14]
    assert again.commit_offset("SZ") == 15
    table = read_archive(store, "SZ")
    assert table["offset"].to_pylist() == list(range(15))
    assert pc.all(pc.equal(table["partition"], 3)).as_py()
    assert table["value"].to_pylist() == [float(i) for i in range(15)]
    dates = {d: int(n) for d, n in Counter(table["date"].to_pylist()).items()}
    assert dates == {"2025-12-31": 6, "2026-01-01": 9}
    assert len(store.list("topic=SZ/")) == 3


def _archive_process(prefix: str, root: str, kafka, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "KAFKA_SESSION_TIMEOUT_MS": str(kafka.session_timeout_ms), "BRAID_LOG_JSON": "1",
           "PYTHONPATH": str(REPO)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "sensors", "archive", "--root", root,
             "--topic-prefix", prefix, "--partitions", "4", "--max-rows", "150",
             "--max-age", "0.5"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def _archived(store: GcsStore, topics: SensorTopics) -> dict[str, list[tuple[int, int]]]:
    out = {}
    for sensor in ("SX", "SY", "SZ"):
        table = read_archive(store, topics.of(sensor))
        out[sensor] = list(zip(table["partition"].to_pylist(), table["offset"].to_pylist(),
                               strict=True)) if table.num_rows else []
    return out


@pytest.mark.slow
def test_kill_9_and_restart_archive_every_message_exactly_once(
    gcs_emulator, kafka_settings, unique_topic_prefix, tmp_path
) -> None:
    topics = SensorTopics.prefixed(unique_topic_prefix)
    ensure_topics(kafka_settings, topics.specs(4), TopicSettings())
    events = simulate(SimulatorConfig(clients=8, duration_ms=30 * 60_000, seed=3))
    half = events.num_rows // 2
    produce_events(kafka_settings, topics, events.slice(0, half), 4)
    root = f"gs://{gcs_emulator.bucket}/{unique_topic_prefix}archive"
    store = GcsStore(root)
    log = tmp_path / "archive.log"

    proc = _archive_process(unique_topic_prefix, root, kafka_settings, log)
    deadline = time.monotonic() + 60
    while len(store.list("")) < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    produce_events(kafka_settings, topics, events.slice(half), 4)

    proc = _archive_process(unique_topic_prefix, root, kafka_settings, log)
    try:
        expected = {s: int(pc.sum(pc.equal(events["sensor"], s)).as_py()) for s in
                    ("SX", "SY", "SZ")}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = _archived(store, topics)
            if all(len(set(got[s])) >= expected[s] for s in expected):
                break
            time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    got = _archived(store, topics)
    # every archived message against the topics, byte for byte
    want: dict[tuple[str, int, int], bytes | None] = {}
    archived: dict[tuple[str, int, int], list[bytes | None]] = {}
    for sensor in expected:
        for partition, offset, _, value in read_topic(kafka_settings, topics.of(sensor)):
            want[(sensor, partition, offset)] = value
        table = read_archive(store, topics.of(sensor))
        for partition, offset, message in zip(table["partition"].to_pylist(),
                                              table["offset"].to_pylist(),
                                              table["message"].to_pylist(), strict=True):
            archived.setdefault((sensor, partition, offset), []).append(message)
    check = compare_history(archived, want)
    record_faults("archive killed", {"kill -9": 1}, check)
    assert check.clean and not check.identical_duplicates, check
    for sensor, count in expected.items():
        assert len(got[sensor]) == count, f"{sensor}: duplicates or losses ({log.read_text()})"
        assert len(set(got[sensor])) == count
    sz = read_archive(store, topics.SZ)
    source = events.filter(pc.equal(events["sensor"], "SZ"))
    assert sorted(sz["timestamp_ms"].to_pylist()) == sorted(source["timestamp_ms"].to_pylist())
    assert not store.list("_tmp/")  # no temporary object left behind

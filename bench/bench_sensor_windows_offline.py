"""The sensor window operator alone, without Kafka: its cost per reading, and a digest of every
feature row it emits (to show that a speed change keeps the values, byte for byte).

    .venv/bin/python bench/bench_sensor_windows_offline.py [--clients 2000] [--minutes 25]

The readings are `bench_sensors.py`'s (simulator, seed 1), on 100 partitions by the client's
key; they reach one `SensorWindowGroup` (all partitions, as one window process owns them) in
polls of `--per-partition` messages from each partition, as a consumer's micro-batches mix
partitions; every 6 polls each partition is snapshotted and asked its commit offset (the
processor's checkpoint). Printed: readings per second for the operator's `process_many` (JSON
decoding, windows, features, encoding) and the SHA-256 of every output row (topic, key, value)
in emission order: run it on two commits to compare the values.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from features.sensors.binning import DEFAULT_EDGES  # noqa: E402
from features.sensors.schemas import FEATURES  # noqa: E402
from features.sensors.simulator import SimulatorConfig, simulate  # noqa: E402
from features.sensors.window_math import DEFAULT_GRACE_MS, sensor_window  # noqa: E402
from streaming.partitioning import partition_for  # noqa: E402
from streaming.pipelines.sensors import reading_message  # noqa: E402
from streaming.processors.sensor_windows import (  # noqa: E402
    SensorWindowConfig,
    SensorWindowGroup,
)
from streaming.runtime.records import InputBatch  # noqa: E402

PARTITIONS = 100
CHECKPOINT_EVERY = 6  # polls


Poll = list[tuple[int, InputBatch]]  # (partition, its messages) of one consumer poll


def polls(clients: int, minutes: int, per_partition: int) -> tuple[int, list[Poll]]:
    events = simulate(SimulatorConfig(clients=clients, duration_ms=minutes * 60_000, seed=1))
    sz = events.filter(pc.equal(events["sensor"], "SZ"))
    logs: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(PARTITIONS)}
    for client, ts, value in zip(sz["client"].to_pylist(), sz["timestamp_ms"].to_pylist(),
                                 sz["value"].to_pylist(), strict=True):
        logs[partition_for(client, PARTITIONS)].append(
            (client.encode(), reading_message(client, ts, value, "SZ")))
    now = int(time.time() * 1000)  # the messages' Kafka timestamps: produced now
    position = dict.fromkeys(range(PARTITIONS), 0)
    out: list[Poll] = []
    while any(position[p] < len(logs[p]) for p in range(PARTITIONS)):
        work: Poll = []
        for p in range(PARTITIONS):
            chunk = logs[p][position[p]:position[p] + per_partition]
            if chunk:
                first = position[p]
                work.append((p, InputBatch(
                    "SZ", p, np.arange(first, first + len(chunk), dtype=np.int64),
                    [k for k, _ in chunk], [v for _, v in chunk],
                    np.full(len(chunk), now, dtype=np.int64))))
                position[p] += len(chunk)
        out.append(work)
    return sz.num_rows, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=2_000)
    parser.add_argument("--minutes", type=int, default=25)
    parser.add_argument("--per-partition", type=int, default=100,
                        help="messages per partition in a poll (100 x 100 partitions: the "
                        "processor's default batch of 10,000)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    readings, work = polls(args.clients, args.minutes, args.per_partition)
    config = SensorWindowConfig(sensor_window(DEFAULT_GRACE_MS), DEFAULT_EDGES,
                                {name: name for name in FEATURES})
    gc.collect()
    gc.freeze()  # as the processor does after its start
    for _ in range(args.runs):
        group = SensorWindowGroup(config)
        for p in range(PARTITIONS):
            group.open(p)
        digest, rows, spent = hashlib.sha256(), 0, 0.0
        for i, batches in enumerate(work):
            started = time.perf_counter()
            emission = group.process_many(batches, 0)
            if i % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
                for p in range(PARTITIONS):
                    group.snapshot(p)
                    group.commit_offset(p)
            spent += time.perf_counter() - started
            for batch in emission.batches:
                rows += len(batch.values)
                for key, value in zip(batch.keys, batch.values, strict=True):
                    digest.update(f"{batch.topic}|{key}|".encode())
                    digest.update(value)
        print(f"{readings:,} readings in {len(work)} polls: {spent:.2f} s in the operator = "
              f"{readings / spent:,.0f} readings/s; {rows:,} feature rows, sha256 "
              f"{digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()

"""The sensor window and join operators alone, without Kafka, in a steady state: what a second
of live load costs each of them once a full 10-minute window is held.

    .venv/bin/python bench/bench_sensor_steady_offline.py [--rate 10000] [--clients 10000]

Every client sends one SZ reading per `clients / rate` seconds, its SX with every 12th and its
SY with every 6th SZ reading (the simulator's intervals, as `bench_sensors.py`'s live load), all
clients spread evenly over each second. Each simulated second is handed over in `--polls`
polls: the window operator (`SensorWindowGroup`, all 100 partitions, as one window process
owns them) takes the SZ readings, and the join operator (`SensorJoinGroup`) takes its FA, FI,
FD rows with the SX and SY readings, routed to partitions by key as the broker would; both
prune once a second (the processors' checkpoint). Printed every `--report-s` simulated
seconds: the readings the window operator holds, the events the join holds, and each
operator's milliseconds of work for that second of load (a core's share, without Kafka).

It shows the costs that grow with held state, which a 70-second live run never reaches
(`bench_sensors.py --prefill-s` fills the live pipeline the same way, in minutes).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from features.sensors.binning import DEFAULT_EDGES  # noqa: E402
from features.sensors.model import DEFAULT_MODEL  # noqa: E402
from features.sensors.schemas import DEFAULT_SENSOR_PARTITIONS, FEATURES  # noqa: E402
from features.sensors.window_math import (  # noqa: E402
    DEFAULT_GRACE_MS,
    WINDOW_MS,
    sensor_window,
)
from streaming.partitioning import partition_for  # noqa: E402
from streaming.pipelines.sensors import reading_message  # noqa: E402
from streaming.processors.sensor_join import SensorJoinConfig, SensorJoinGroup  # noqa: E402
from streaming.processors.sensor_windows import (  # noqa: E402
    SensorWindowConfig,
    SensorWindowGroup,
)
from streaming.runtime.records import InputBatch  # noqa: E402

T0 = 1_767_225_600_000
SX_EVERY, SY_EVERY = 12, 6  # SZ readings per SX, per SY (features.sensors.simulator)


class Logs:
    """Next offset per (topic, partition), and one poll's messages grouped into batches."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = defaultdict(int)
        self.pending: dict[tuple[str, int], list[tuple[bytes, bytes]]] = defaultdict(list)

    def add(self, topic: str, partition: int, key: bytes, value: bytes) -> None:
        self.pending[(topic, partition)].append((key, value))

    def take(self) -> list[tuple[int, InputBatch]]:
        work = []
        for (topic, partition), messages in self.pending.items():
            first = self.next[(topic, partition)]
            self.next[(topic, partition)] = first + len(messages)
            work.append((partition, InputBatch(
                topic, partition, np.arange(first, first + len(messages), dtype=np.int64),
                [k for k, _ in messages], [v for _, v in messages])))
        self.pending.clear()
        return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=10_000, help="SZ readings per second")
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=WINDOW_MS // 1000 + 60,
                        help="simulated seconds (default: a window, then a minute)")
    parser.add_argument("--polls", type=int, default=10, help="polls per simulated second")
    parser.add_argument("--report-s", type=int, default=60)
    args = parser.parse_args()
    partitions = DEFAULT_SENSOR_PARTITIONS
    windows = SensorWindowGroup(SensorWindowConfig(
        sensor_window(DEFAULT_GRACE_MS), DEFAULT_EDGES, {f: f for f in FEATURES}))
    join = SensorJoinGroup(SensorJoinConfig({t: t for t in ("SX", "SY", *FEATURES)},
                                            "predictions", DEFAULT_MODEL))
    for p in range(partitions):
        windows.open(p)
        join.open(p)
    names = [f"client-{i:06d}" for i in range(args.clients)]
    keys = [n.encode() for n in names]
    part = [partition_for(n, partitions) for n in names]
    rng = np.random.default_rng(1)
    to_windows, to_join = Logs(), Logs()
    print(f"{args.rate:,} SZ readings/s over {args.clients:,} clients, {args.polls} polls a "
          f"second, every setting the operators' default (grace {DEFAULT_GRACE_MS} ms)",
          flush=True)
    per_poll = args.rate // args.polls
    reading = 0
    spent = {"windows": 0.0, "join": 0.0}
    out = {"predictions": 0, "dead letters": 0}
    for second in range(args.seconds):
        for _ in range(args.polls):
            for _ in range(per_poll):
                c = reading % args.clients
                nth = reading // args.clients
                ts = T0 + reading * 1000 // args.rate
                if (nth + c) % SX_EVERY == 0:
                    to_join.add("SX", part[c], keys[c],
                                reading_message(names[c], ts, float(nth % 3), "SX"))
                if (nth + c) % SY_EVERY == 0:
                    to_join.add("SY", part[c], keys[c],
                                reading_message(names[c], ts, float(nth % 2), "SY"))
                to_windows.add("SZ", part[c], keys[c],
                               reading_message(names[c], ts, float(rng.normal(50, 5)), "SZ"))
                reading += 1
            start = time.perf_counter()
            emitted = windows.process_many(to_windows.take(), 0)
            spent["windows"] += time.perf_counter() - start
            for batch in emitted.batches:
                for key, value in zip(batch.partition_keys, batch.values, strict=True):
                    to_join.add(batch.topic, partition_for(key, partitions), key.encode(), value)
            start = time.perf_counter()
            answered = join.process_many(to_join.take(), 0)
            answered.extend(join.tick_many(set(range(partitions)), 0))
            spent["join"] += time.perf_counter() - start
            out["predictions"] += sum(len(b) for b in answered.batches) + len(answered.records)
            out["dead letters"] += len(emitted.dead_letters) + len(answered.dead_letters)
        start = time.perf_counter()
        windows.prune()
        spent["windows"] += time.perf_counter() - start
        start = time.perf_counter()
        join.prune()
        spent["join"] += time.perf_counter() - start
        if (second + 1) % args.report_s == 0:
            per_s = {k: v * 1000 / args.report_s for k, v in spent.items()}
            print(f"t={second + 1:4d} s: window operator holds {len(windows.buffer):,} readings,"
                  f" {per_s['windows']:.0f} ms of work per second of load; join holds "
                  f"{len(join.events):,} events, {per_s['join']:.0f} ms per second; "
                  f"{out['predictions']:,} predictions, {out['dead letters']:,} dead letters "
                  "so far", flush=True)
            spent = dict.fromkeys(spent, 0.0)


if __name__ == "__main__":
    main()

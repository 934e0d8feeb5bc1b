"""Quix Streams 3.x reference app for bench/bench_markets.py: 60 s tumbling OHLCV per pair.

Runs in its own venv (bench/.venv-quix, `pip install quixstreams==3.28.1`: Quix pins a
confluent-kafka that conflicts with Braid's). Consumes the bench's trades topic from the
beginning (a fresh consumer group), windows by the payload's `timestamp_ms`, aggregates with Quix's
built-in aggregations (First/Max/Min/Last/Sum/Count), emits final windows to `--output`, and
stops once `--expect` input messages were seen. Prints one line `RESULT {json}` with the count,
the wall time of the first and of the last input message, and the peak RSS (VmHWM).

    bench/.venv-quix/bin/python bench/quix_ohlcv_app.py --bootstrap HOST:PORT --topic T \
        --output T_OUT --group G --expect 1000000 [--window-ms 60000 --grace-ms 5000]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import Count, First, Last, Max, Min, Sum


def peak_rss_kb() -> int:
    """VmHWM: ru_maxrss would include the parent's peak (inherited across fork and exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--window-ms", type=int, default=60_000)
    parser.add_argument("--grace-ms", type=int, default=5_000)
    parser.add_argument("--session-timeout-ms", type=int, default=6_000)
    args = parser.parse_args()

    state = {"count": 0, "first": 0.0, "last": 0.0}
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        use_changelog_topics=False,
        state_dir=tempfile.mkdtemp(prefix="quix-state-"),
        consumer_extra_config={"session.timeout.ms": args.session_timeout_ms},
        loglevel="WARNING",
    )

    def timestamp_ms(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
        # called once per input message: the cheapest place to count and time them
        state["count"] += 1
        now = time.time()
        if state["count"] == 1:
            state["first"] = now
        state["last"] = now
        if state["count"] >= args.expect:
            app.stop()
        return int(value["timestamp_ms"])

    trades = app.topic(args.topic, value_deserializer="json", timestamp_extractor=timestamp_ms)
    candles = app.topic(args.output, value_serializer="json")
    sdf = app.dataframe(trades)
    sdf = (
        sdf.tumbling_window(duration_ms=args.window_ms, grace_ms=args.grace_ms)
        .agg(open=First("price"), high=Max("price"), low=Min("price"), close=Last("price"),
             volume=Sum("volume"), count=Count())
        .final()
    )
    sdf.to_topic(candles)
    app.run()
    print("RESULT " + json.dumps({
        "consumed": state["count"], "first": state["first"], "last": state["last"],
        "maxrss_kb": peak_rss_kb(),
    }), flush=True)


if __name__ == "__main__":
    main()

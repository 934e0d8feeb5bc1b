"""Benchmark of the serving layer against plain Feast 0.67, in the same run.

    .venv/bin/python bench/bench_feast.py [--pairs 20] [--candles 50000] [--reads 2000]
        [--sink-rows 100000] [--training-rows 1000000] [--http-rate 200] [--http-seconds 10]
        [--skip training,http,...]

A Redis server (Debian's `redis-server`) is started on a free port unless REDIS_URL is set.
Parts:

- **peer**: plain Feast in a throwaway repo (one entity, 30 float features):
  `write_to_online_store` of 20,000 rows in one call (Redis, SQLite), 8-row calls, and
  `get_online_features` p50/p99 for one entity;
- **online**: Braid's `get_online_features` for one pair from the full indicator feature view
  (`indicators_1m`: every indicator of features/) in process, Redis and SQLite, and the ratio to
  the peer;
- **http**: the same through `feast serve` at `--http-rate` requests/s (sequential, paced);
- **sink**: the online sink's write throughput into Redis (OnlineWriter: newest check +
  `write_to_online_store`), feature rows/s, over `--sink-rows` rows of distinct pairs;
- **training**: a point-in-time training set of `--training-rows` entity rows x every indicator
  feature through Braid's DuckDB offline store over Delta, and through Feast's default file
  (dask) offline store over Parquet for comparison on `--file-peer-rows` of them (its merge
  holds every entity row x every feature row of the pair: 5,000 rows asked 33.5 GiB here).

Synthetic data: `--pairs` random-walk series of `--candles` one-minute candles, indicators from
`features.indicators.compute_indicators`, written as the backfill lays tables out.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
from deltalake import write_deltalake  # noqa: E402
from feast import Entity, FeatureStore, FeatureView, Field, FileSource  # noqa: E402
from feast.types import Float64  # noqa: E402
from feast.value_type import ValueType  # noqa: E402

from features.indicators import INDICATOR_COLUMNS, compute_indicators  # noqa: E402
from features.schemas.candle import INDICATOR_ARROW_SCHEMA  # noqa: E402
from serving.feast_definitions import definitions  # noqa: E402
from serving.settings import FeastSettings  # noqa: E402
from serving.store import feast_redis_connection  # noqa: E402
from streaming.sinks.online_store import OnlineRow, OnlineWriter  # noqa: E402

MINUTE = 60_000
JSON = {"Content-Type": "application/json"}
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(fn: Callable[[], object], n: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def synthetic_indicators(pairs: int, candles: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    tables = []
    for p in range(pairs):
        close = 100 * (p + 1) * np.exp(np.cumsum(rng.normal(0, 0.002, candles)))
        spread = np.abs(rng.normal(0, 0.001, candles)) * close
        series = {"open": np.r_[close[0], close[:-1]], "high": close + spread,
                  "low": close - spread, "close": close,
                  "volume": rng.lognormal(0, 1, candles)}
        values = compute_indicators(series)
        starts = T0 + np.arange(candles, dtype=np.int64) * MINUTE
        tables.append(pa.table({
            "pair": pa.array([f"P{p:03d}/USD"] * candles), "window_ms": np.full(candles, MINUTE),
            "window_start_ms": starts, "window_end_ms": starts + MINUTE, "close": close,
            **{c: values[c] for c in INDICATOR_COLUMNS}}, schema=INDICATOR_ARROW_SCHEMA))
    return pa.concat_tables(tables)


def start_redis(work: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"], None
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(work)],
                            stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return f"redis://127.0.0.1:{port}/0", proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def repo(path: Path, online: str, offline: str = "serving.offline_store.BraidDuckDBOfflineStore"
         ) -> FeatureStore:
    path.mkdir(parents=True, exist_ok=True)
    (path / "feature_store.yaml").write_text(
        f"project: b{abs(hash(str(path))) % 10**8}\nprovider: local\nregistry: registry.db\n"
        f"{online}offline_store:\n  type: {offline}\nentity_key_serialization_version: 3\n")
    return FeatureStore(repo_path=str(path))


def sqlite_online() -> str:
    return "online_store:\n  type: sqlite\n  path: online.db\n"


def redis_online(url: str) -> str:
    return f"online_store:\n  type: redis\n  connection_string: '{feast_redis_connection(url)}'\n"


def peer(work: Path, redis_url: str, reads: int) -> dict[str, dict[str, float]]:
    """Plain Feast: one entity, 30 float features."""
    results = {}
    for name, online in (("redis", redis_online(redis_url)), ("sqlite", sqlite_online())):
        store = repo(work / f"peer_{name}", online, "file")
        parquet = work / "peer.parquet"
        features = [f"f{i}" for i in range(30)]
        rng = np.random.default_rng(1)
        frame = pd.DataFrame(rng.normal(size=(20_000, 30)), columns=features)
        frame.insert(0, "id", [f"e{i}" for i in range(20_000)])
        frame["event_timestamp"] = pd.Timestamp("2026-01-01", tz="UTC")
        frame.to_parquet(parquet)
        entity = Entity(name="id", join_keys=["id"], value_type=ValueType.STRING)
        view = FeatureView(name="peer", entities=[entity], ttl=timedelta(days=1),
                           schema=[Field(name=f, dtype=Float64) for f in features],
                           source=FileSource(path=str(parquet), timestamp_field="event_timestamp"))
        store.apply([entity, view])
        start = time.perf_counter()
        store.write_to_online_store("peer", frame)
        bulk = 20_000 / (time.perf_counter() - start)
        eight = frame.iloc[:8]

        def write_eight(s: FeatureStore = store, f: pd.DataFrame = eight) -> None:
            s.write_to_online_store("peer", f)

        small = timed(write_eight, 50)
        refs = [f"peer:{f}" for f in features]

        def read_one(s: FeatureStore = store, r: list[str] = refs) -> object:
            return s.get_online_features(features=r, entity_rows=[{"id": "e1"}]).to_dict()

        reads_ms = timed(read_one, reads)
        results[name] = {"write_rows_per_s": bulk, "write_8_rows_ms": statistics.median(small),
                         "read_p50_ms": pct(reads_ms, 50), "read_p99_ms": pct(reads_ms, 99)}
    return results


def braid_online(store: FeatureStore, reads: int) -> dict[str, float]:
    features = [f"indicators_1m:{c}" for c in INDICATOR_COLUMNS]
    ms = timed(lambda: store.get_online_features(features=features,
                                                 entity_rows=[{"pair": "P000/USD"}]).to_dict(),
               reads)
    return {"read_p50_ms": pct(ms, 50), "read_p99_ms": pct(ms, 99),
            "features": float(len(features))}


def http(path: Path, rate: float, seconds: float) -> dict[str, float]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    feast = str(Path(sys.executable).with_name("feast"))
    proc = subprocess.Popen([feast, "serve", "-h", "127.0.0.1", "-p", str(port), "--no-access-log"],
                            cwd=path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body = ('{"features": [' + ",".join(f'"indicators_1m:{c}"' for c in INDICATOR_COLUMNS)
            + '], "entities": {"pair": ["P000/USD"]}}').encode()
    url = f"http://127.0.0.1:{port}/get-online-features"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(url, body, JSON), timeout=2).read()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        latencies: list[float] = []
        errors = 0
        interval, next_at = 1 / rate, time.perf_counter()
        end = next_at + seconds
        while next_at < end:
            now = time.perf_counter()
            if now < next_at:
                time.sleep(next_at - now)
            start = time.perf_counter()
            try:
                urllib.request.urlopen(urllib.request.Request(url, body, JSON), timeout=5).read()
                latencies.append((time.perf_counter() - start) * 1000)
            except OSError:  # counted, not fatal: a loaded machine resets connections
                errors += 1
            next_at += interval
        achieved = len(latencies) / (time.perf_counter() - (end - seconds))
    finally:
        proc.terminate()
        proc.wait(10)
    return {"p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99),
            "achieved_rps": achieved, "requests": float(len(latencies)), "errors": float(errors)}


def sink(store: FeatureStore, table: pa.Table, rows: int) -> dict[str, float]:
    """OnlineWriter into Redis: distinct pairs per call (every row is written)."""
    columns = [c for c in INDICATOR_COLUMNS] + ["close", "window_start_ms", "window_end_ms"]
    sample = table.slice(0, 1).to_pylist()[0]
    writer = OnlineWriter(store)
    batch = 10_000
    made = [OnlineRow("indicators_1m", "pair", f"S{i:07d}", int(sample["window_end_ms"]),
                      {c: sample[c] for c in columns}) for i in range(rows)]
    writer.stored_ms("indicators_1m", "pair", [r.entity for r in made])  # seed (one read each)
    start = time.perf_counter()
    for i in range(0, rows, batch):
        writer.write("indicators_1m", made[i:i + batch])
    seconds = time.perf_counter() - start
    return {"rows": float(rows), "rows_per_s": rows / seconds,
            "feature_values_per_s": rows * len(columns) / seconds}


def training(work: Path, store: FeatureStore, table: pa.Table, rows: int,
             peer_rows: int) -> dict[str, float]:
    rng = np.random.default_rng(3)
    pairs = table["pair"].unique().to_pylist()
    ends = table["window_end_ms"].to_numpy()
    entity = pd.DataFrame({
        "pair": rng.choice(pairs, rows),
        "event_timestamp": pd.to_datetime(rng.integers(ends.min(), ends.max(), rows), unit="ms",
                                          utc=True)})
    features = [f"indicators_1m:{c}" for c in INDICATOR_COLUMNS]
    start = time.perf_counter()
    frame = store.get_historical_features(entity_df=entity, features=features).to_df()
    braid_s = time.perf_counter() - start
    out = {"entity_rows": float(rows), "braid_duckdb_delta_s": braid_s,
           "rows_returned": float(len(frame))}
    print(f"training set {rows:,} entity rows x {len(INDICATOR_COLUMNS)} indicators: braid "
          f"(DuckDB over Delta) {braid_s:.1f} s (target < 60 s)", flush=True)
    # the same through Feast's default file offline store over Parquet
    parquet = work / "indicators.parquet"
    pandas_table = table.to_pandas()
    pandas_table["event_timestamp"] = pd.to_datetime(pandas_table["window_end_ms"], unit="ms",
                                                     utc=True)
    pandas_table.to_parquet(parquet)
    file_store = repo(work / "file_repo", sqlite_online(), "file")
    pair_entity = Entity(name="pair", join_keys=["pair"], value_type=ValueType.STRING)
    view = FeatureView(name="indicators_1m", entities=[pair_entity], ttl=timedelta(minutes=2),
                       schema=[Field(name=c, dtype=Float64) for c in INDICATOR_COLUMNS],
                       source=FileSource(path=str(parquet), timestamp_field="event_timestamp"))
    file_store.apply([pair_entity, view])
    # Feast's file (dask) store needed 20 GB for 20,000 rows here (OOM-killed): a sample
    sample = entity.iloc[:peer_rows]
    start = time.perf_counter()
    out["peer_rows"] = float(len(sample))
    try:
        file_frame = file_store.get_historical_features(entity_df=sample,
                                                        features=features).to_df()
    except MemoryError as error:  # dask merges every entity row with every feature row
        print(f"Feast file/dask store, {len(sample):,} entity rows: failed after "
              f"{time.perf_counter() - start:.1f} s: {type(error).__name__}: {error}")
        out["feast_file_dask_s"] = math.nan
        out["same_values"] = math.nan
        return out
    out["feast_file_dask_s"] = time.perf_counter() - start
    keys = ["pair", "event_timestamp"]
    merged = frame.merge(sample, on=keys).sort_values(keys).reset_index(drop=True)
    other = file_frame.sort_values(keys).reset_index(drop=True)
    out["same_values"] = float(np.allclose(merged["rsi_14"].astype(float),
                                           other["rsi_14"].astype(float), equal_nan=True))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--candles", type=int, default=50_000)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--sink-rows", type=int, default=100_000)
    parser.add_argument("--training-rows", type=int, default=1_000_000)
    parser.add_argument("--file-peer-rows", type=int, default=200,
                        help="entity rows for Feast's file offline store (its dask merge holds "
                             "every entity row x every feature row of its pair: 5,000 needed "
                             "33 GB)")
    parser.add_argument("--http-rate", type=float, default=200.0)
    parser.add_argument("--http-seconds", type=float, default=10.0)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="bench_feast_"))
    redis_url, redis_proc = start_redis(work)
    try:
        print(f"load average {os.getloadavg()}, cores {os.cpu_count()}, redis {redis_url}")
        t = time.perf_counter()
        table = synthetic_indicators(args.pairs, args.candles)
        days = pa.compute.strftime(pa.compute.cast(table["window_start_ms"],
                                                   pa.timestamp("ms", "UTC")), "%Y-%m-%d")
        write_deltalake(str(work / "offline" / "indicators"), table.append_column("day", days),
                        partition_by=["pair", "window_ms", "day"])
        print(f"data: {table.num_rows} indicator rows in {time.perf_counter() - t:.1f} s")
        entities, views, services = definitions(
            FeastSettings(offline_root=str(work / "offline"), durations=["1m"]))
        stores = {}
        for name, online in (("redis", redis_online(redis_url)), ("sqlite", sqlite_online())):
            stores[name] = repo(work / f"braid_{name}", online)
            stores[name].apply([*entities, *views, *services])
            last = table.filter(pa.compute.equal(table["window_end_ms"],
                                                 int(table["window_end_ms"].to_numpy().max())))
            frame = last.to_pandas().drop(columns=["window_ms"])
            frame["event_timestamp"] = pd.to_datetime(frame["window_end_ms"], unit="ms", utc=True)
            stores[name].write_to_online_store("indicators_1m", frame)
        if "peer" not in skip:
            peer_results = peer(work, redis_url, args.reads)
            for name, r in peer_results.items():
                print(f"peer plain Feast {name}: write {r['write_rows_per_s']:,.0f} rows/s "
                      f"(20,000 in one call), 8-row call {r['write_8_rows_ms']:.1f} ms, "
                      f"get_online_features p50/p99 {r['read_p50_ms']:.2f}/"
                      f"{r['read_p99_ms']:.2f} ms (30 features)")
        if "online" not in skip:
            for name, store in stores.items():
                r = braid_online(store, args.reads)
                ratio = ""
                if "peer" not in skip:
                    ratio = (f"; ratio to peer p99 "
                             f"{r['read_p99_ms'] / peer_results[name]['read_p99_ms']:.2f}x")
                print(f"braid {name}: get_online_features one pair, {int(r['features'])} "
                      f"indicator features: p50/p99 {r['read_p50_ms']:.2f}/"
                      f"{r['read_p99_ms']:.2f} ms (target p99 < 2 ms on redis){ratio}")
        if "http" not in skip:
            r = http(work / "braid_redis", args.http_rate, args.http_seconds)
            print(f"braid feast serve (redis) at {r['achieved_rps']:.0f} req/s, "
                  f"{int(r['requests'])} requests ({int(r['errors'])} failed): "
                  f"p50/p99 {r['p50_ms']:.2f}/{r['p99_ms']:.2f} ms"
                  f" (target p99 < 10 ms; Feast's published tuned server ~5 ms p99)")
        if "sink" not in skip:
            r = sink(stores["redis"], table, args.sink_rows)
            peer_rate = peer_results["redis"]["write_rows_per_s"] if "peer" not in skip else 0
            ratio = f"; ratio to peer {r['rows_per_s'] / peer_rate:.2f}x" if peer_rate else ""
            print(f"braid online sink into redis: {r['rows_per_s']:,.0f} rows/s "
                  f"({r['feature_values_per_s']:,.0f} feature values/s) over "
                  f"{int(r['rows'])} rows (target 50,000 rows/s){ratio}")
        if "training" not in skip:
            r = training(work, stores["sqlite"], table, args.training_rows,
                         args.file_peer_rows)
            if not math.isnan(r["feast_file_dask_s"]):
                print(f"Feast file/dask store: {r['feast_file_dask_s']:.1f} s for "
                      f"{int(r['peer_rows']):,} of the entity rows; same values as braid: "
                      f"{bool(r['same_values'])}")
        print(f"finished {datetime.now(UTC).isoformat(timespec='seconds')}")
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

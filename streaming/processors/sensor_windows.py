"""The sensor window operator: SZ readings -> window features FA, FI, FD per reading.

Per partition it keeps, for each client, the stream time (largest SZ event time seen), the
emitted horizon (features of readings with event time <= it were emitted) and a buffer of the
client's accepted readings with event time > horizon - window (all a future result can need).

- A reading's features are emitted once its client's stream time reaches `t + grace`
  (`features.windows.SlidingWindow`), or on idleness: a client quiet for `idle_timeout_ms` of
  wall clock gets its pending readings with `t + grace <= now` emitted. Each feature row goes
  to its topic (FA, FI, FD) keyed by client, identified by (client, feature, timestamp_ms).
- A reading is late (dead letter) when `t + grace <= ` the client's stream time before it, or
  `t <=` its emitted horizon: it could only change results already emitted. Any arrival order
  within grace therefore gives the same features.
- Commit offset: the earliest offset still in the buffer (else the next offset), so a restart
  rebuilds the buffer from the log. Readings no longer needed are dropped in bulk (at each
  checkpoint, or once enough piled up), so the buffer stays sorted without a re-sort per batch.

Replay after a restart (the candle operator's pattern, adapted to sliding windows whose old
readings are still context): the checkpoint holds stream times, horizons, the next offset, the
commit offset it went with (`needed_from`) and the offsets rejected as late since then. Replayed
messages (below the checkpointed next offset) are not judged again: those below `needed_from` or
rejected before are skipped, the others go back into the buffer; no feature at or below a
horizon is emitted twice, so the replay decides exactly as the first run did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from features.sensors.binning import BinEdges
from features.sensors.schemas import FEATURES, MAX_TIMESTAMP_MS, SENSOR_SCHEMA_VERSION
from features.sensors.window_math import window_features
from features.windows import NO_STREAM_TIME, SlidingWindow, sliding_late_mask
from streaming.processors.sensor_decoding import decode_readings
from streaming.runtime.json_batch import dead_letters
from streaming.runtime.key_codes import KeyCodes
from streaming.runtime.operator import PartitionOperator, Snapshot
from streaming.runtime.records import DeadLetter, Emission, InputBatch, OutputBatch

SNAPSHOT_VERSION = 1
SMALL_EMIT = 128  # below this many rows, orjson per row beats one polars pass
KEY_SPAN = MAX_TIMESTAMP_MS  # buffer sort key: client code * KEY_SPAN + event time
MAX_CLIENTS = np.iinfo(np.int64).max // KEY_SPAN - 1
PRUNE_MIN = 4_096


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The concatenation of `arange(lo[i], hi[i])` over i (empty ranges allowed)."""
    lengths = np.maximum(hi - lo, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.repeat(lo - (ends - lengths), lengths) + np.arange(total)


@dataclass(frozen=True)
class SensorWindowConfig:
    window: SlidingWindow
    edges: BinEdges
    output_topics: dict[str, str]  # feature name (FA, FI, FD) -> topic
    idle_timeout_ms: int = 10_000


class SensorWindowOperator(PartitionOperator):
    def __init__(self, config: SensorWindowConfig, partition: int) -> None:
        self.config = config
        self.partition = partition
        self.clients = KeyCodes()
        self.stream_time = np.empty(0, dtype=np.int64)
        self.emitted_until = np.empty(0, dtype=np.int64)
        self.last_arrival_ms = np.empty(0, dtype=np.int64)  # -1 until the first tick
        # the buffer, kept sorted by (client, timestamp, value); key = client * KEY_SPAN + ts
        self.buf_key = np.empty(0, dtype=np.int64)
        self._stale = 0  # buffered readings no future result needs, not yet dropped
        self.buf_code = np.empty(0, dtype=np.int64)
        self.buf_ts = np.empty(0, dtype=np.int64)
        self.buf_value = np.empty(0, dtype=np.float64)
        self.buf_offset = np.empty(0, dtype=np.int64)
        self.position: int | None = None
        self.replay_until = 0
        self.needed_from = 0
        self.late_offsets: set[int] = set()

    def _grow(self, new: int) -> None:
        if new:
            fill = np.full(new, NO_STREAM_TIME, dtype=np.int64)
            self.stream_time = np.r_[self.stream_time, fill]
            self.emitted_until = np.r_[self.emitted_until, fill]
            self.last_arrival_ms = np.r_[self.last_arrival_ms, np.full(new, -1, dtype=np.int64)]

    # --- processing ------------------------------------------------------------------------
    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        decoded = decode_readings(batch, "SZ")
        emission = Emission(dead_letters=dead_letters(batch, decoded.reasons, self.replay_until))
        self.position = int(batch.offsets[-1]) + 1
        table = decoded.table
        if table.num_rows == 0:
            return emission
        codes, new = self.clients.encode(table["client"].to_pylist())
        self._grow(new)
        ts = table["timestamp_ms"].to_numpy()
        values = table["value"].to_numpy()
        offsets = decoded.offsets
        replayed = offsets < self.replay_until
        skip = replayed & ((offsets < self.needed_from)
                           | np.isin(offsets, np.fromiter(self.late_offsets, np.int64)))
        fresh = ~replayed
        late = np.zeros(len(ts), dtype=bool)
        if fresh.any():
            late[fresh] = sliding_late_mask(self.config.window, codes[fresh], ts[fresh],
                                            self.stream_time, self.emitted_until)
        if late.any():
            emission.dead_letters.extend(self._late_letters(batch, offsets[late]))
            self.late_offsets.update(int(o) for o in offsets[late])
        accept = ~skip & ~late
        self._append(codes[accept], ts[accept], values[accept], offsets[accept])
        touched = np.unique(codes)
        np.maximum.at(self.stream_time, codes, ts)
        self.last_arrival_ms[touched] = now_ms
        final_until = self.emitted_until.copy()
        final_until[touched] = np.maximum(
            self.emitted_until[touched],
            self.config.window.final_until(self.stream_time[touched]))
        emission.batches.extend(self._emit(touched, final_until))
        return emission

    def _late_letters(self, batch: InputBatch, offsets: np.ndarray) -> list[DeadLetter]:
        reason = (f"late: beyond {self.config.window.grace_ms} ms grace for "
                  f"{self.config.window.label} sliding windows")
        rows = np.searchsorted(batch.offsets, offsets)
        return [DeadLetter(reason, batch.topic, batch.partition, int(batch.offsets[i]),
                           batch.keys[i], batch.values[i]) for i in rows]

    def _append(self, codes: np.ndarray, ts: np.ndarray, values: np.ndarray,
                offsets: np.ndarray) -> None:
        """Merge accepted readings into the sorted buffer (no full re-sort: the buffer is large,
        a batch small)."""
        if not len(codes):
            return
        if int(codes.max()) >= MAX_CLIENTS:
            raise OverflowError(f"more than {MAX_CLIENTS} clients in one partition")
        key = codes * KEY_SPAN + ts
        order = np.lexsort((values, key))
        key, codes, ts, values, offsets = (key[order], codes[order], ts[order], values[order],
                                           offsets[order])
        pos = np.searchsorted(self.buf_key, key, side="left")
        at = np.minimum(pos, len(self.buf_key) - 1)
        ties = (len(self.buf_key) > 0) & (self.buf_key[at] == key) if len(self.buf_key) else (
            np.zeros(len(key), dtype=bool))
        if ties.any() or (np.diff(key) == 0).any():
            # same client and event time: order by value, as the canonical order says
            both = [np.r_[a, b] for a, b in ((self.buf_key, key), (self.buf_code, codes),
                                             (self.buf_ts, ts), (self.buf_value, values),
                                             (self.buf_offset, offsets))]
            merged = np.lexsort((both[3], both[0]))
            self.buf_key, self.buf_code = both[0][merged], both[1][merged]
            self.buf_ts, self.buf_value = both[2][merged], both[3][merged]
            self.buf_offset = both[4][merged]
            return
        self.buf_key = np.insert(self.buf_key, pos, key)
        self.buf_code = np.insert(self.buf_code, pos, codes)
        self.buf_ts = np.insert(self.buf_ts, pos, ts)
        self.buf_value = np.insert(self.buf_value, pos, values)
        self.buf_offset = np.insert(self.buf_offset, pos, offsets)

    def tick(self, now_ms: int) -> Emission:
        """Emit pending readings of clients quiet for the idle timeout once `t + grace <= now`."""
        self.last_arrival_ms[self.last_arrival_ms < 0] = now_ms
        if not len(self.buf_ts):
            return Emission()
        quiet = now_ms - self.last_arrival_ms >= self.config.idle_timeout_ms
        pending = ((self.buf_ts > self.emitted_until[self.buf_code]) & quiet[self.buf_code]
                   & (self.buf_ts + self.config.window.grace_ms <= now_ms))
        if not pending.any():
            return Emission()
        final_until = self.emitted_until.copy()
        np.maximum.at(final_until, self.buf_code[pending], self.buf_ts[pending])
        touched = np.unique(self.buf_code[pending])
        return Emission(batches=self._emit(touched, final_until, prune_all=True),
                        closed_on_idle=True)

    def _emit(self, touched: np.ndarray, final_until: np.ndarray,
              prune_all: bool = False) -> list[OutputBatch]:
        """Emit features of the `touched` clients' buffered readings in (horizon, final_until],
        advance their horizons and drop readings no future result needs (in bulk, once enough
        have piled up)."""
        base = touched * KEY_SPAN
        lo = np.searchsorted(self.buf_key, base, side="left")
        hi = np.searchsorted(self.buf_key, base + KEY_SPAN, side="left")
        rows = _ranges(lo, hi)  # the touched clients' rows, still sorted
        records: list[OutputBatch] = []
        if len(rows):
            sub_key = self.buf_key[rows]
            due = _ranges(
                np.searchsorted(sub_key, base + self.emitted_until[touched], side="right"),
                np.searchsorted(sub_key, base + final_until[touched], side="right"))
            if len(due):
                records = self._records(rows, due)
        self.emitted_until = final_until
        cut = np.searchsorted(self.buf_key, base + final_until[touched]
                              - self.config.window.size_ms, side="right")
        drop = np.maximum(cut - lo, 0)
        self._stale += int(drop.sum())
        if self._stale and (prune_all or self._stale >= max(PRUNE_MIN, len(self.buf_key) // 16)):
            self._prune()
        return records

    def _prune(self) -> None:
        """Drop every buffered reading at or before its client's horizon - window."""
        keep = self.buf_ts > self.emitted_until[self.buf_code] - self.config.window.size_ms
        if not keep.all():
            self.buf_key, self.buf_code = self.buf_key[keep], self.buf_code[keep]
            self.buf_ts, self.buf_value = self.buf_ts[keep], self.buf_value[keep]
            self.buf_offset = self.buf_offset[keep]
        self._stale = 0

    def _records(self, rows: np.ndarray, due: np.ndarray) -> list[OutputBatch]:
        """Features of buffer rows `rows[due]` (`rows`: whole clients' sorted readings). One
        batch per feature topic, rows in (client, event time) order; JSON encoded in one
        vectorized pass (polars; floats in shortest round-trip form) or, for a few rows, orjson.
        """
        window = self.config.window
        code, ts = self.buf_code[rows], self.buf_ts[rows]
        feats = window_features(code, ts, self.buf_value[rows], due, window.size_ms)
        edges = self.config.edges
        columns = {"FA": feats.fa, "FI": feats.fi, "FD": feats.fd}
        names = np.asarray(self.clients.names, dtype=object)[code[due]]
        bins = {name: edges.bin(name, columns[name]) for name in FEATURES}
        if len(due) < SMALL_EMIT:
            return self._small_records(names.tolist(), ts[due], feats.count, columns, bins)
        frame = pl.DataFrame({
            "client": pl.Series(names, dtype=pl.String), "timestamp_ms": ts[due],
            "count": feats.count,
            **{name: columns[name] for name in FEATURES},
            **{f"{name}_bin": bins[name] for name in FEATURES},
        })
        encoded = frame.select(*(pl.struct(
            v=pl.lit(SENSOR_SCHEMA_VERSION, pl.Int64), client="client",
            feature=pl.lit(name, pl.String), timestamp_ms="timestamp_ms", value=name,
            bin=f"{name}_bin", edges_version=pl.lit(edges.version, pl.String),
            window_ms=pl.lit(window.size_ms, pl.Int64), count="count",
        ).struct.json_encode().alias(name) for name in FEATURES))
        keys = frame["client"].to_list()
        batches = [
            OutputBatch(self.config.output_topics[name], keys,
                        encoded[name].to_arrow().cast(pa.large_binary()).to_pylist(), keys)
            for name in FEATURES
        ]
        return batches

    def _small_records(self, clients: list[str], ts: np.ndarray, count: np.ndarray,
                       columns: dict[str, np.ndarray], bins: dict[str, np.ndarray]
                       ) -> list[OutputBatch]:
        """The same rows as :meth:`_records`, encoded with orjson (cheaper for a few rows)."""
        window, edges = self.config.window, self.config.edges
        ts_list, count_list = ts.tolist(), count.tolist()
        batches = []
        for name in FEATURES:
            values = [
                orjson.dumps({"v": SENSOR_SCHEMA_VERSION, "client": c, "feature": name,
                              "timestamp_ms": t, "value": x, "bin": b,
                              "edges_version": edges.version, "window_ms": window.size_ms,
                              "count": n})
                for c, t, x, b, n in zip(clients, ts_list, columns[name].tolist(),
                                         bins[name].tolist(), count_list, strict=True)
            ]
            batches.append(OutputBatch(self.config.output_topics[name], clients, values,
                                       clients))
        return batches

    # --- offsets and checkpoints -----------------------------------------------------------
    def commit_offset(self, topic: str) -> int | None:
        if self.position is None:
            return None
        if len(self.buf_offset):
            return min(self.position, int(self.buf_offset.min()))
        return self.position

    def snapshot(self) -> Snapshot:
        """Also drops buffered readings no future result needs, so the commit offset that the
        processor asks for next is as far along as it can be."""
        if self._stale:
            self._prune()
        committed = self.commit_offset("")
        needed = self.needed_from if committed is None else committed
        self.late_offsets = {o for o in self.late_offsets if o >= needed}
        return {
            "version": SNAPSHOT_VERSION,
            "next_offset": max(self.position or 0, self.replay_until),
            "needed_from": needed,
            "late_offsets": sorted(self.late_offsets),
            "clients": self.clients.names,
            "stream_time": self.stream_time.tolist(),
            "emitted_until": self.emitted_until.tolist(),
        }

    def restore(self, snapshot: Snapshot) -> None:
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported sensor window snapshot: {snapshot.get('version')}")
        for name in snapshot["clients"]:
            self.clients.code(name)
        self._grow(len(self.clients.names) - len(self.stream_time))
        self.stream_time = np.asarray(snapshot["stream_time"], dtype=np.int64)
        self.emitted_until = np.asarray(snapshot["emitted_until"], dtype=np.int64)
        self.replay_until = int(snapshot["next_offset"])
        self.needed_from = int(snapshot["needed_from"])
        self.late_offsets = {int(o) for o in snapshot["late_offsets"]}

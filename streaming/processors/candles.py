"""The candle operator: trades -> final OHLCV candles per pair, for every configured duration.

Per partition it keeps, for each pair, the stream time (largest event time seen) and per
duration the end of the last closed window, plus the trades of open windows (memory is bounded by
the open windows, not by trades seen). At close a candle is computed from its trades by
`features.candles.aggregate_trades`, the batch engine's own call, so the value is bit-identical
however the stream was split into micro-batches or restarted. A window
closes when its pair's stream time reaches end + grace, or when the pair has been quiet for the
idle timeout (wall clock) and the window is over by the wall clock. Only final candles are
emitted. Lateness follows `features.windows` (per pair, in arrival order), so the batch engine
drops the same trades. A trade stamped too far ahead of its Kafka timestamp is invalid
(`features.event_time`): dead-lettered before it can move its pair's stream time.

Replay after a restart: the checkpoint restores stream times and closed windows; messages before
the checkpointed offset whose window already closed are skipped (they were emitted or dead-lettered
before), the others rebuild the open windows exactly as the first run had them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from features.candles import aggregate_trades, finalize
from features.event_time import DEFAULT_MAX_EVENT_TIME_SKEW_MS
from features.schemas.candle import record_key
from features.windows import NO_STREAM_TIME, TumblingWindow, late_mask
from streaming.processors.trade_decoding import decode_trades
from streaming.runtime.operator import PartitionOperator, Snapshot
from streaming.runtime.records import DeadLetter, Emission, InputBatch, OutputRecord

NO_OFFSET = np.iinfo(np.int64).max


@dataclass
class CandleConfig:
    """Candle durations (each with its grace), where candles go, the idle timeout, and how far
    a trade's event time may lie ahead of its Kafka timestamp (`features.event_time`)."""

    windows: tuple[TumblingWindow, ...]
    output_topic: str
    idle_timeout_ms: int = 10_000
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS


_BUFFER_COLUMNS = ("key", "timestamp_ms", "trade_id", "price", "volume", "offset")


@dataclass
class _OpenTrades:
    """Accepted trades of one duration's open windows, in arrival order, as column chunks."""

    chunks: list[dict[str, np.ndarray]] = field(default_factory=list)

    def append(self, columns: dict[str, np.ndarray]) -> None:
        self.chunks.append(columns)

    def columns(self) -> dict[str, np.ndarray]:
        if len(self.chunks) != 1:
            merged = {c: np.concatenate([ch[c] for ch in self.chunks]) for c in _BUFFER_COLUMNS}
            self.chunks = [merged]
        return self.chunks[0]

    def __len__(self) -> int:
        return sum(len(ch["key"]) for ch in self.chunks)

    def min_offset(self) -> int | None:
        return min((int(ch["offset"].min()) for ch in self.chunks if len(ch["offset"])),
                   default=None)


class CandleOperator(PartitionOperator):
    def __init__(self, config: CandleConfig, partition: int) -> None:
        self.config = config
        self.partition = partition
        self.pairs: list[str] = []
        self._codes: dict[str, int] = {}
        self.stream_time = np.empty(0, dtype=np.int64)
        # wall clock of each pair's last trade; -1 until the first tick after a restore
        self.last_arrival_ms = np.empty(0, dtype=np.int64)
        self.closed_until = {w.size_ms: np.empty(0, dtype=np.int64) for w in config.windows}
        self.open = {w.size_ms: _OpenTrades() for w in config.windows}
        self.position: int | None = None  # next offset to process, once consuming
        self.replay_until = 0  # offsets below this were processed before the last restart

    # --- state helpers ---------------------------------------------------------------------
    def _encode(self, pairs: pa.ChunkedArray) -> np.ndarray:
        encoded = pc.dictionary_encode(pairs).combine_chunks()
        dictionary = encoded.dictionary.to_pylist()
        mapping = np.array([self._code(p) for p in dictionary], dtype=np.int64)
        return mapping[encoded.indices.to_numpy(zero_copy_only=False)]

    def _code(self, pair: str) -> int:
        code = self._codes.get(pair)
        if code is None:
            code = self._codes[pair] = len(self.pairs)
            self.pairs.append(pair)
            self.stream_time = np.r_[self.stream_time, NO_STREAM_TIME]
            self.last_arrival_ms = np.r_[self.last_arrival_ms, -1]
            for size in self.closed_until:
                self.closed_until[size] = np.r_[self.closed_until[size], NO_STREAM_TIME]
        return code

    # --- processing ------------------------------------------------------------------------
    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        decoded = decode_trades(batch, self.config.max_event_time_skew_ms)
        emission = Emission(dead_letters=decoded.dead_letters)
        self.position = int(batch.offsets[-1]) + 1
        table = decoded.table
        if table.num_rows == 0:
            return emission
        codes = self._encode(table["pair"])
        ts = table["timestamp_ms"].to_numpy()
        tid = table["trade_id"].to_numpy()
        price = table["price"].to_numpy()
        volume = table["volume"].to_numpy()
        offsets = decoded.offsets
        replayed = offsets < self.replay_until
        stream_time_before = self.stream_time.copy()
        for window in self.config.windows:
            closed = self.closed_until[window.size_ms]
            ends = window.start_of(ts) + window.size_ms
            skip = replayed & (ends <= closed[codes])
            keep = ~skip
            late = np.zeros(len(ts), dtype=bool)
            late[keep] = late_mask(window, codes[keep], ts[keep], stream_time_before, closed)
            reason = f"late: beyond {window.grace_ms} ms grace for {window.label} windows"
            for offset in offsets[late & ~replayed]:
                i = int(np.searchsorted(batch.offsets, offset))
                emission.dead_letters.append(DeadLetter(
                    reason, batch.topic, batch.partition, int(offset), batch.keys[i],
                    batch.values[i]))
            accept = keep & ~late
            if accept.any():
                self._accumulate(window, codes[accept], ts[accept], tid[accept], price[accept],
                                 volume[accept], offsets[accept])
        np.maximum.at(self.stream_time, codes, ts)
        self.last_arrival_ms[np.unique(codes)] = now_ms
        emission.records.extend(self._close_by_stream_time())
        return emission

    def _accumulate(
        self, window: TumblingWindow, codes: np.ndarray, ts: np.ndarray, tid: np.ndarray,
        price: np.ndarray, volume: np.ndarray, offsets: np.ndarray,
    ) -> None:
        self.open[window.size_ms].append({"key": codes, "timestamp_ms": ts, "trade_id": tid,
                                          "price": price, "volume": volume, "offset": offsets})

    def _close_by_stream_time(self) -> list[OutputRecord]:
        records: list[OutputRecord] = []
        for window in self.config.windows:
            threshold = self.stream_time - window.grace_ms  # windows ending <= this are final
            horizon = threshold - np.mod(threshold, window.size_ms)
            closed = self.closed_until[window.size_ms]
            np.maximum(closed, np.where(self.stream_time == NO_STREAM_TIME, closed, horizon),
                       out=closed)
            current = self.open[window.size_ms]
            if len(current):
                trades = current.columns()
                ends = window.start_of(trades["timestamp_ms"]) + window.size_ms
                records.extend(self._emit(window, ends <= closed[trades["key"]]))
        return records

    def on_resume(self, now_ms: int) -> None:
        np.maximum(self.last_arrival_ms, now_ms, out=self.last_arrival_ms)

    def tick(self, now_ms: int) -> Emission:
        """Close windows of pairs quiet for the idle timeout whose end + grace has passed."""
        emission = Emission()
        self.last_arrival_ms[self.last_arrival_ms < 0] = now_ms
        quiet = now_ms - self.last_arrival_ms >= self.config.idle_timeout_ms
        for window in self.config.windows:
            current = self.open[window.size_ms]
            if not len(current):
                continue
            trades = current.columns()
            keys = trades["key"]
            starts = window.start_of(trades["timestamp_ms"])
            due = quiet[keys] & (starts + window.size_ms + window.grace_ms <= now_ms)
            if due.any():
                closed = self.closed_until[window.size_ms]
                np.maximum.at(closed, keys[due], starts[due] + window.size_ms)
                emission.records.extend(self._emit(window, due))
                emission.closed_on_idle = True
        return emission

    def _emit(self, window: TumblingWindow, mask: np.ndarray) -> list[OutputRecord]:
        """Compute and remove the windows of the buffered trades in `mask` (whole windows);
        records in (pair, window) order."""
        if not mask.any():
            return []
        trades = self.open[window.size_ms].columns()
        self.open[window.size_ms] = _OpenTrades([{c: v[~mask] for c, v in trades.items()}])
        candles = finalize(aggregate_trades(
            window, trades["key"][mask], trades["timestamp_ms"][mask], trades["trade_id"][mask],
            trades["price"][mask], trades["volume"][mask]))
        size = window.size_ms
        records = []
        for i in range(len(candles["key"])):
            pair = self.pairs[int(candles["key"][i])]
            start = int(candles["window_start_ms"][i])
            value = {
                "pair": pair,
                "window_ms": size,
                "window_start_ms": start,
                "window_end_ms": start + size,
                "open": float(candles["open"][i]),
                "high": float(candles["high"][i]),
                "low": float(candles["low"][i]),
                "close": float(candles["close"][i]),
                "volume": float(candles["volume"][i]),
                "vwap": float(candles["vwap"][i]),
                "trade_count": int(candles["trade_count"][i]),
            }
            records.append(OutputRecord(self.config.output_topic, record_key(pair, size, start),
                                        orjson.dumps(value), pair))
        return records

    # --- offsets and checkpoints -----------------------------------------------------------
    def commit_offset(self, topic: str) -> int | None:
        if self.position is None:
            return None
        lows = [low for o in self.open.values() if (low := o.min_offset()) is not None]
        return min([self.position, *lows])

    def snapshot(self) -> Snapshot:
        return {
            "version": 1,
            "next_offset": max(self.position or 0, self.replay_until),
            "pairs": self.pairs,
            "stream_time": self.stream_time.tolist(),
            "closed_until": {str(k): v.tolist() for k, v in self.closed_until.items()},
        }

    def restore(self, snapshot: Snapshot) -> None:
        for pair in snapshot["pairs"]:
            self._code(pair)
        self.stream_time = np.asarray(snapshot["stream_time"], dtype=np.int64)
        for size in self.closed_until:
            saved = snapshot["closed_until"].get(str(size))
            if saved is not None:  # a duration added since the checkpoint starts fresh
                self.closed_until[size] = np.asarray(saved, dtype=np.int64)
        self.replay_until = int(snapshot["next_offset"])



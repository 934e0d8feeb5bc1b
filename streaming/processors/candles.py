"""The candle operator: trades -> final OHLCV candles per pair, for every configured duration.

Per partition it keeps, for each pair, the stream time (largest event time seen) and per
duration the end of the last closed window, plus the trades of open windows (memory is bounded by
the open windows, not by trades seen). At close a candle is computed from its trades by
`features.candles.aggregate_trades`, the batch engine's own call, so the value is bit-identical
however the stream was split into micro-batches or restarted. Only final candles are emitted.

Closing (`features.windows`): a window closes when its pair's stream time passes its end +
grace, or when a closure record in the `trades` log closes it: a quiet live pair's window is
closed on idle by a closure record the candle processor writes into the log, so history closes
by event time alone and the batch, reading the same log, drops exactly the trades the stream
drops.
In detail: on a wall-clock tick, a pair that has been quiet for the idle timeout, whose stream
time is live (its latest trade reached Kafka within `live_lag_ms` of its stream time) and whose
window is over by the wall clock (end + grace), gets an `idle` closure record
(`features.schemas.window_closure`) produced to the very partition it reads; the window closes
when the operator reads that record back, at its offset, exactly where the batch layer (Spark
reading the topic) and any replay after a restart apply it too. History (a file replay, a REST
backfill, anything whose event times lie behind its ingestion time) is never closed on idle,
however long its source pauses. A trade of a window closed by a closure record is
dead-lettered naming that rule (`closed on idle`, `closed at end of input`); a trade whose window
ended `grace` before its pair's stream time is dead-lettered `late by stream time`. Lateness is
decided per pair in arrival order (`features.windows.lateness`), so the batch engine drops the
same trades. A trade stamped too far ahead of its Kafka timestamp is invalid
(`features.event_time`): dead-lettered before it can move its pair's stream time.

Replay after a restart: the checkpoint restores stream times and closed windows; messages before
the checkpointed offset whose window already closed are skipped (they were emitted or dead-lettered
before), the others rebuild the open windows exactly as the first run had them, and closure
records are applied again at their offsets.
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
from features.schemas.window_closure import ClosureRule, WindowClosure
from features.windows import (
    CLOSED_BY_LOG,
    LATE_BY_STREAM_TIME,
    NO_STREAM_TIME,
    Closures,
    TumblingWindow,
    closed_until_at,
    lateness,
)
from streaming.processors.trade_decoding import decode_trades
from streaming.runtime.operator import PartitionOperator, Snapshot
from streaming.runtime.records import DeadLetter, Emission, InputBatch, OutputRecord

NO_OFFSET = np.iinfo(np.int64).max


DEFAULT_LIVE_LAG_MS = 60_000
"""A pair is live when its latest trade reached Kafka at most this long after its stream time:
live trades arrive within seconds, a replay of history hours or years later."""


@dataclass
class CandleConfig:
    """Candle durations (each with its grace), where candles go, the idle timeout, how far a
    live pair's stream time may lag its trades' ingestion time (`live_lag_ms`: only live pairs
    are closed on idle), how far a trade's event time may lie ahead of its Kafka timestamp
    (`features.event_time`), and the name idle closure records are signed with (`group`)."""

    windows: tuple[TumblingWindow, ...]
    output_topic: str
    idle_timeout_ms: int = 10_000
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS
    live_lag_ms: int = DEFAULT_LIVE_LAG_MS
    group: str = ""


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
        # ingestion time (Kafka timestamp, else the wall clock) of each pair's latest trade:
        # the pair is live while this is within `live_lag_ms` of its stream time
        self.ingested_ms = np.empty(0, dtype=np.int64)
        self.closed_until = {w.size_ms: np.empty(0, dtype=np.int64) for w in config.windows}
        # the closure record that last raised `closed_until` (offset, rule), for dead letters
        self.closed_by: dict[int, dict[int, tuple[int, ClosureRule]]] = {
            w.size_ms: {} for w in config.windows}
        # window end up to which an idle closure record was produced and not yet read back
        self.requested = {w.size_ms: np.empty(0, dtype=np.int64) for w in config.windows}
        self.open = {w.size_ms: _OpenTrades() for w in config.windows}
        self.topic: str | None = None  # the input topic (closure records go back to it)
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
            self.ingested_ms = np.r_[self.ingested_ms, NO_STREAM_TIME]
            for size in self.closed_until:
                self.closed_until[size] = np.r_[self.closed_until[size], NO_STREAM_TIME]
                self.requested[size] = np.r_[self.requested[size], NO_STREAM_TIME]
        return code

    # --- processing ------------------------------------------------------------------------
    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        decoded = decode_trades(batch, self.config.max_event_time_skew_ms)
        emission = Emission(dead_letters=decoded.dead_letters)
        self.position = int(batch.offsets[-1]) + 1
        self.topic = batch.topic
        closures = self._closures(decoded.closures)
        rules = [c.closure for _, c in decoded.closures]
        table = decoded.table
        if table.num_rows:
            self._judge_and_keep(batch, decoded.offsets, table, closures, rules, emission,
                                 now_ms)
        if len(closures):
            self._apply_closures(closures, rules)
        if table.num_rows or len(closures):
            emission.records.extend(self._close_by_stream_time())
        return emission

    def _closures(self, records: list[tuple[int, WindowClosure]]) -> Closures:
        if not records:
            return Closures.empty()
        return Closures(
            np.array([self._code(c.pair) for _, c in records], dtype=np.int64),
            np.array([o for o, _ in records], dtype=np.int64),
            np.array([c.window_ms or 0 for _, c in records], dtype=np.int64),
            np.array([c.through_ms for _, c in records], dtype=np.int64))

    def _judge_and_keep(self, batch: InputBatch, offsets: np.ndarray, table: pa.Table,
                        closures: Closures, rules: list[ClosureRule], emission: Emission,
                        now_ms: int) -> None:
        """Decide lateness of the batch's valid trades per duration (dead letters naming the
        rule), keep the on-time ones in their open windows, move stream time on."""
        codes = self._encode(table["pair"])
        ts = table["timestamp_ms"].to_numpy()
        tid = table["trade_id"].to_numpy()
        price = table["price"].to_numpy()
        volume = table["volume"].to_numpy()
        replayed = offsets < self.replay_until
        stream_time_before = self.stream_time.copy()
        for window in self.config.windows:
            closed = self.closed_until[window.size_ms]
            ends = window.start_of(ts) + window.size_ms
            skip = replayed & (ends <= closed[codes])
            keep = ~skip
            closed_at, closer = closed_until_at(window, codes[keep], offsets[keep], ts[keep],
                                                closed, closures)
            why = np.zeros(len(ts), dtype=np.int8)
            why[keep] = lateness(window, codes[keep], ts[keep], stream_time_before, closed_at)
            by = np.full(len(ts), -1, dtype=np.int64)
            by[keep] = closer
            for i in np.flatnonzero((why != 0) & ~replayed):
                emission.dead_letters.append(self._late_letter(batch, window, int(offsets[i]),
                                                               int(codes[i]), int(why[i]),
                                                               int(by[i]), closures, rules))
            accept = keep & (why == 0)
            if accept.any():
                self._accumulate(window, codes[accept], ts[accept], tid[accept], price[accept],
                                 volume[accept], offsets[accept])
        np.maximum.at(self.stream_time, codes, ts)
        self.last_arrival_ms[np.unique(codes)] = now_ms
        ingested = np.full(len(ts), now_ms, dtype=np.int64)
        if batch.timestamps is not None:
            stamps = (batch.timestamps if len(offsets) == len(batch.offsets)
                      else batch.timestamps[np.searchsorted(batch.offsets, offsets)])
            ingested = np.where(stamps > 0, stamps, now_ms)
        np.maximum.at(self.ingested_ms, codes, ingested)

    def _late_letter(self, batch: InputBatch, window: TumblingWindow, offset: int, code: int,
                     why: int, closer: int, closures: Closures,
                     rules: list[ClosureRule]) -> DeadLetter:
        if why == LATE_BY_STREAM_TIME:
            reason = (f"late by stream time: beyond {window.grace_ms} ms grace for "
                      f"{window.label} windows")
        else:
            assert why == CLOSED_BY_LOG
            rule: ClosureRule | None
            if closer >= 0:
                by_offset, rule = int(closures.positions[closer]), rules[closer]
            else:
                by_offset, rule = self.closed_by[window.size_ms].get(code, (-1, None))
            said = rule.text if rule is not None else "closed by a closure record"
            at = f" at offset {by_offset}" if by_offset >= 0 else ""
            reason = (f"{said}: the pair's {window.label} window was closed by the closure "
                      f"record{at}")
        i = int(np.searchsorted(batch.offsets, offset))
        return DeadLetter(reason, batch.topic, batch.partition, offset, batch.keys[i],
                          batch.values[i])

    def _apply_closures(self, closures: Closures, rules: list[ClosureRule]) -> None:
        """Raise each pair's closed windows to what the batch's closure records close."""
        for window in self.config.windows:
            ends = closures.ends(window)
            closed = self.closed_until[window.size_ms]
            for j in np.argsort(closures.positions, kind="stable"):
                code, end = int(closures.key_codes[j]), int(ends[j])
                if end > closed[code]:
                    closed[code] = end
                    self.closed_by[window.size_ms][code] = (int(closures.positions[j]),
                                                            rules[j])

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
        """Write an idle closure record for each window of a live pair quiet for the idle timeout
        whose end + grace has passed by the wall clock; the window closes when the record is
        read back (`process`), at its offset in the log."""
        emission = Emission()
        self.last_arrival_ms[self.last_arrival_ms < 0] = now_ms
        if self.topic is None:
            return emission
        quiet = now_ms - self.last_arrival_ms >= self.config.idle_timeout_ms
        live = (self.ingested_ms >= 0) & (
            self.ingested_ms - self.stream_time <= self.config.live_lag_ms)
        for window in self.config.windows:
            current = self.open[window.size_ms]
            if not len(current):
                continue
            trades = current.columns()
            keys = trades["key"]
            ends = window.start_of(trades["timestamp_ms"]) + window.size_ms
            due = quiet[keys] & live[keys] & (ends + window.grace_ms <= now_ms)
            if not due.any():
                continue
            through = np.full(len(self.pairs), NO_STREAM_TIME, dtype=np.int64)
            np.maximum.at(through, keys[due], ends[due])
            requested = self.requested[window.size_ms]
            for code in np.flatnonzero(through > requested):
                requested[code] = through[code]
                emission.records.append(self._closure_record(
                    int(code), window, int(through[code]) - 1, now_ms))
        return emission

    def _closure_record(self, code: int, window: TumblingWindow, through_ms: int,
                        now_ms: int) -> OutputRecord:
        """An idle closure record for the pair's `window`-sized windows up to `through_ms`, to
        this operator's own input partition (where the batch layer reads it too)."""
        pair = self.pairs[code]
        closure = WindowClosure(closure=ClosureRule.IDLE, pair=pair, window_ms=window.size_ms,
                                through_ms=through_ms, decided_at_ms=now_ms,
                                by=self.config.group)
        assert self.topic is not None
        return OutputRecord(self.topic, pair, closure.to_wire(), pair, partition=self.partition)

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
        """A copy of the state: the processor serialises it only once the outputs before it are
        acknowledged, while this operator goes on processing (a pair seen meanwhile must not
        join the snapshot's pairs without its stream time)."""
        return {
            "version": 1,
            "next_offset": max(self.position or 0, self.replay_until),
            "pairs": list(self.pairs),
            "stream_time": self.stream_time.tolist(),
            "closed_until": {str(k): v.tolist() for k, v in self.closed_until.items()},
            "ingested_ms": self.ingested_ms.tolist(),
            "closed_by": {str(size): {self.pairs[code]: [offset, str(rule)]
                                      for code, (offset, rule) in by.items()}
                          for size, by in self.closed_by.items()},
        }

    def restore(self, snapshot: Snapshot) -> None:
        for pair in snapshot["pairs"]:
            self._code(pair)
        self.stream_time = np.asarray(snapshot["stream_time"], dtype=np.int64)
        for size in self.closed_until:
            saved = snapshot["closed_until"].get(str(size))
            if saved is not None:  # a duration added since the checkpoint starts fresh
                self.closed_until[size] = np.asarray(saved, dtype=np.int64)
            for pair, (offset, rule) in snapshot.get("closed_by", {}).get(str(size), {}).items():
                self.closed_by[size][self._codes[pair]] = (int(offset), ClosureRule(rule))
        if "ingested_ms" in snapshot:  # older checkpoints: not live until the next trade
            self.ingested_ms = np.asarray(snapshot["ingested_ms"], dtype=np.int64)
        self.replay_until = int(snapshot["next_offset"])



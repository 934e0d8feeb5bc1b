"""The processor loop: consume micro-batches, run partition operators, produce, checkpoint, commit.

Effectively-once without broker transactions:
1. outputs are keyed deterministically, so producing one twice writes the same value twice;
2. a checkpoint takes every operator's snapshot and the offsets it makes safe to commit (up to
   what each operator no longer needs, e.g. the earliest message of a still-open window); the
   snapshots are written to the checkpoint topic only once every output and dead letter produced
   before them is acknowledged, and the offsets are committed only once the snapshots are;
3. on (re)assignment an operator is restored from its checkpoint and the consumer resumes at the
   committed offset, so open windows are rebuilt from the log and decisions replay identically.
A `kill -9` at any point therefore leaves at worst duplicate outputs with identical values.

While running, a checkpoint never blocks the loop: it advances as acknowledgements arrive
(`streaming.runtime.deliveries`) and processing goes on meanwhile; outputs produced after a
snapshot was taken belong to the next checkpoint. On close and on revocation it blocks (flush).
A delivery that fails stops the processor before anything after it is committed: a restart
replays from the last commit, so nothing is lost.
"""

from __future__ import annotations

import gc
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import numpy as np
import structlog
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from features.event_time import NO_INGESTION_TIME
from streaming.partitioning import partition_for
from streaming.runtime.checkpoint import CheckpointStore, checkpoint_key
from streaming.runtime.clients import consume_available, make_consumer, make_producer
from streaming.runtime.dead_letter import DeadLetterSink
from streaming.runtime.deliveries import Deliveries, DeliveryCallback
from streaming.runtime.operator import PartitionOperator
from streaming.runtime.records import Emission, InputBatch, OutputBatch
from streaming.runtime.step_timings import StepTimings
from streaming.settings import KafkaSettings
from streaming.topics import CHECKPOINTS, DEAD_LETTER

#: Commit errors meaning the group has moved on without this member's generation.
_GROUP_MOVED_ON = frozenset({
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID,
})

log = structlog.get_logger(__name__)

#: The collector's thresholds while a processor runs (see `StreamProcessor.run`).
GC_THRESHOLDS = (50_000, 20, 10)

OperatorFactory = Callable[[int], PartitionOperator]


@dataclass
class ProcessorConfig:
    name: str  # also the consumer group id
    input_topics: tuple[str, ...]
    batch_size: int = 10_000
    poll_timeout_s: float = 0.1
    checkpoint_interval_s: float = 1.0
    slow_checkpoint_warning_s: float = 30.0  # log when acknowledgements take longer
    # log a step whose work (all but the poll's wait) takes longer, with its split
    # (`streaming.runtime.step_timings`); a poll returning this much after its timeout too.
    # Half a second: a full batch's ordinary work (~50 ms) during a catch-up logs nothing
    slow_step_warning_s: float = 0.5
    dead_letter_topic: str = DEAD_LETTER
    checkpoint_topic: str = CHECKPOINTS
    consumer_overrides: dict[str, str | int | bool] = field(default_factory=dict)


@dataclass
class ProcessorStats:
    consumed: int = 0
    produced: int = 0
    dead_letters: int = 0
    checkpoints: int = 0
    batches: int = 0


@dataclass
class PendingCheckpoint:
    """A checkpoint taken but not yet committed: waiting for its outputs' acknowledgements,
    then for its snapshots' own."""

    outputs: Deliveries
    snapshots: dict[str, dict[str, Any]]
    offsets: list[TopicPartition]
    taken_at: float
    written: Deliveries | None = None
    warned: bool = False


class StreamProcessor:
    """Runs one consumer group member. Call :meth:`run` (blocks) or :meth:`step` (one batch)."""

    def __init__(
        self, kafka: KafkaSettings, config: ProcessorConfig, operator_factory: OperatorFactory
    ) -> None:
        self.kafka = kafka
        self.config = config
        self._factory = operator_factory
        # delivery never times out: a broker outage holds outputs back instead of losing them
        self._producer = make_producer(kafka, **{"message.timeout.ms": 0},
                                       error_cb=self._on_producer_error)
        self._consumer = make_consumer(kafka, config.name, error_cb=self._on_client_error,
                                       **config.consumer_overrides)
        self._checkpoints = CheckpointStore(kafka, self._producer, config.checkpoint_topic)
        self._dead_letters = DeadLetterSink(self._producer, config.dead_letter_topic, config.name)
        self._operators: dict[int, PartitionOperator] = {}
        self._kinds: dict[type[PartitionOperator], list[PartitionOperator]] = {}
        self._at_end = AtEnd()  # (topic, partition) consumed to the end
        # offsets this member committed while running, since its last assignment change
        self._committed: dict[tuple[str, int], int] = {}
        self._blind: set[int] = set()  # partition numbers to resume after a broker outage
        self._partition_counts: dict[str, int] = {}
        self._last_checkpoint = time.monotonic()
        self._outputs = Deliveries()  # what the next checkpoint waits for
        self._pending: PendingCheckpoint | None = None
        self._checkpoint_soon = False  # right after the pending one (an idle close happened)
        self._fatal: KafkaError | None = None
        self._assigned_at = time.monotonic()
        self._member_id: str | None = None  # the group membership the operators came with
        self._dirty = False
        self._stopping = False
        self.stats = ProcessorStats()
        self.timings = StepTimings()
        self._log = log.bind(processor=config.name)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._consumer.subscribe(
            list(self.config.input_topics), on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._log.info("subscribed", topics=self.config.input_topics)

    def run(self, *, max_idle_s: float | None = None, install_signals: bool = True) -> None:
        """Consume until SIGTERM/SIGINT (or `max_idle_s` without messages, for batch replays)."""
        if install_signals:
            signal.signal(signal.SIGTERM, self._request_stop)
            signal.signal(signal.SIGINT, self._request_stop)
        self.start()
        # The startup heap (Feast, MLflow, pandas, the operators' tables: ~400k objects) lives
        # as long as the process: out of the collector's sight, a full collection no longer
        # stalls the loop (it took 190-260 ms in the markets predictor, a 300 ms latency spike
        # about once a minute).
        gc.collect()
        gc.freeze()
        # CPython collects the youngest generation every 700 container allocations: the sensor
        # join at 10,000 events/s (a dict per decoded message) collected 7,300 times and its
        # middle generation 660 times in a 75 s run, 2.5 s in all, up to 272 ms in one step
        # (bench_sensors step timings). Its objects die young by reference count: collecting
        # every GC_THRESHOLDS[0] allocations finds the same garbage far less often (the join's
        # poll p99 at 10,000 events/s offline: 42-54 ms -> 19-21 ms).
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        self.timings.install()  # collections from here on count (not the one above)
        quiet_since = time.monotonic()
        try:
            while not self._stopping:
                if self.step() > 0:
                    quiet_since = time.monotonic()
                elif max_idle_s is not None:
                    # the clock starts once partitions are assigned: joining a group takes time
                    since = max(quiet_since, self._assigned_at)
                    if self._operators and time.monotonic() - since > max_idle_s:
                        break
        finally:
            self.close()
            self.timings.uninstall()
            gc.set_threshold(*thresholds)

    def stop(self) -> None:
        self._stopping = True

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self._log.info("stop requested", signal=signum)
        self._stopping = True

    def close(self) -> None:
        """Flush, checkpoint and commit, then leave the group."""
        try:
            self.checkpoint(final=True)
        finally:
            self._consumer.close()
            self._producer.flush(30)
            self._log.info("stopped", **vars(self.stats), dead_letters_by_reason=dict(
                self._dead_letters.counts))

    # --- one iteration ---------------------------------------------------------------------
    def step(self) -> int:
        """Consume one micro-batch and handle it; returns the number of messages consumed."""
        clock = time.perf_counter
        usage = self.timings.usage()
        marks = [clock()]
        timeout = self._poll_timeout()
        messages = self._poll(timeout)
        marks.append(clock())
        now = time.time()
        emission = Emission()
        batches = self._split(messages)
        newest = max((int(b.timestamps.max()) for b in batches if b.timestamps is not None),
                     default=NO_INGESTION_TIME)
        if newest > 0:
            self.timings.record_arrival(now * 1000, newest)
        work: dict[type[PartitionOperator], list[tuple[PartitionOperator, InputBatch]]] = {}
        for batch in batches:
            operator = self._operators.get(batch.partition)
            if operator is None:  # a message from a partition revoked meanwhile
                continue
            work.setdefault(type(operator), []).append((operator, batch))
        for kind, pairs in work.items():  # one call per operator class: see process_many
            emission.extend(kind.process_many(pairs, int(now * 1000)))
        marks.append(clock())
        idle: dict[type[PartitionOperator], list[PartitionOperator]] = {}
        for number, operator in self._operators.items():
            # idleness means "nothing new at the end of the log", not "not consumed yet": a
            # lagging consumer must not close windows that a caught-up one would keep open
            if self._at_end.count(number) == len(self.config.input_topics):
                if number in self._blind:
                    self._blind.discard(number)
                    operator.on_resume(int(now * 1000))
                idle.setdefault(type(operator), []).append(operator)
        for kind, operators in idle.items():
            emission.extend(kind.tick_many(operators, int(now * 1000)))
        marks.append(clock())
        self._emit(emission)
        marks.append(clock())
        consumed = sum(len(b) for b in batches)
        if consumed:
            self.stats.consumed += consumed
            self.stats.batches += 1
        if consumed or emission.output_count or emission.dead_letters:
            self._dirty = True
        # an idle close is a wall-clock decision: record it in a checkpoint as soon as possible
        self._checkpoint_soon |= emission.closed_on_idle
        self._advance_checkpoint()
        marks.append(clock())
        split = self.timings.record(marks, consumed, usage, self.timings.usage())
        slow = self.config.slow_step_warning_s
        if split.total_s - split.phases["poll"] > slow or split.phases["poll"] > timeout + slow:
            self._log.warning("slow step", poll_timeout_ms=round(timeout * 1000, 1),
                              **split.as_dict())
        return consumed

    def _poll_timeout(self) -> float:
        """How long a poll may wait when nothing is fetched: the poll timeout, or shorter when
        an operator asks to be ticked again sooner (`PartitionOperator.retry_after_s`). The poll
        (`consume_available`) takes up to a batch of what is fetched, waiting only when nothing
        is: a live stream is handled as soon as it arrives; a backlog still comes in full
        batches."""
        timeout = self.config.poll_timeout_s
        for kind, operators in self._kinds.items():
            soon = kind.retry_after_s(operators)
            if soon is not None:
                timeout = min(timeout, soon)
        return timeout

    def _poll(self, timeout: float | None = None) -> list[Message]:
        timeout = self._poll_timeout() if timeout is None else timeout
        return consume_available(self._consumer, self.config.batch_size, timeout)

    def _group_kinds(self) -> None:
        """The operators by class (what `_poll` asks), regrouped when the assignment changes."""
        self._kinds = {}
        for operator in self._operators.values():
            self._kinds.setdefault(type(operator), []).append(operator)

    def _split(self, messages: Sequence[Message]) -> list[InputBatch]:
        """Group a consumed list into per-topic-partition batches, keeping offset order."""
        # a message without an error has its topic and partition (no str()/int() per message)
        groups: dict[tuple[str | None, int | None], list[Message]] = {}
        run: tuple[str | None, int | None] | None = None  # a partition's messages come in runs
        group: list[Message] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add((str(msg.topic()), int(msg.partition() or 0)))
                else:
                    self._log.warning("consume error", error=str(err))
                run = None
                continue
            tp = (msg.topic(), msg.partition())
            if tp != run:
                run = tp
                found = groups.get(tp)
                if found is None:
                    found = groups[tp] = []
                    self._at_end.discard(tp)
                group = found
            group.append(msg)
        return [
            InputBatch(str(topic), int(partition or 0),
                       np.fromiter((m.offset() for m in group), np.int64, len(group)),
                       [m.key() for m in group], [m.value() for m in group],
                       _timestamps(group))
            for (topic, partition), group in groups.items()
        ]

    def _on_client_error(self, error: KafkaError) -> None:
        """librdkafka lost the broker (or similar): until the partitions are caught up again we
        cannot tell a quiet key from one we cannot see."""
        self._log.warning("kafka client error", error=str(error))
        if error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                            KafkaError._TIMED_OUT, KafkaError._MSG_TIMED_OUT):
            self._at_end.clear()
            self._blind.update(self._operators)

    def _emit(self, emission: Emission) -> None:
        records = emission.records
        if records:
            track = self._outputs.track
            for record in records:
                partition = (record.partition if record.partition is not None
                             else partition_for(record.partition_key,
                                                self._partitions(record.topic)))
                self._produce(record.topic, record.key, record.value, partition, track())
            self._producer.poll(0)
        for batch in emission.batches:
            self._emit_batch(batch)
        if emission.dead_letters:
            self._dead_letters.send(emission.dead_letters, self._outputs)
        self.stats.produced += emission.output_count
        self.stats.dead_letters += len(emission.dead_letters)

    def _emit_batch(self, batch: OutputBatch) -> None:
        """Produce a batch's records: one bound delivery callback for all of them (counted at
        once, `Deliveries.track_many`) and positional arguments, as this loop runs once per
        output message (a feature processor's hottest: about 2 us less per message)."""
        count = self._partitions(batch.topic)
        by_key = {k: partition_for(k, count) for k in set(batch.partition_keys)}
        partitions = [by_key[k] for k in batch.partition_keys]
        keys, values, topic = batch.keys, batch.values, batch.topic
        if not len(keys) == len(values) == len(partitions):
            raise ValueError(f"an output batch for {topic} has columns of different lengths")
        on_delivery = self._outputs.track_many(len(keys))
        produce = self._producer.produce
        done = 0
        while done < len(keys):
            try:
                for i in range(done, len(keys)):
                    # produce(topic, value, key, partition, on_delivery)
                    produce(topic, values[i], keys[i], partitions[i], on_delivery)
                done = len(keys)
            except BufferError:  # local queue full: let librdkafka drain it, then go on
                done = i
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _produce(self, topic: str, key: str | bytes, value: bytes, partition: int,
                 on_delivery: DeliveryCallback | None) -> None:
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, partition=partition,
                                       on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: let librdkafka drain it
                self._producer.poll(0.1)

    def _partitions(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            meta = self._producer.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise KafkaException(meta.error)
            count = self._partition_counts[topic] = len(meta.partitions)
        return count

    # --- checkpoints -----------------------------------------------------------------------
    def checkpoint(self, *, final: bool = False) -> list[TopicPartition]:
        """Checkpoint now, blocking: everything produced is acknowledged, fresh snapshots are
        written and acknowledged, offsets committed (synchronously if `final`). Returns the
        offsets committed (with `final`: those the group accepted)."""
        self._last_checkpoint = time.monotonic()
        self._flush()  # every output so far is acknowledged
        if self._pending is not None:  # superseded by the snapshots taken below
            self._pending = None
            self._dirty = True
        self._outputs = Deliveries()
        self._checkpoint_soon = False
        if not self._operators or not self._dirty or not self._still_member():
            return []
        snapshots, offsets = self._take_snapshots()
        self._write_snapshots(snapshots)
        self._flush()
        return offsets if self._commit(offsets, final=final) else []

    def _advance_checkpoint(self) -> None:
        """Take the next step of the pending checkpoint, or take one when due; never blocks."""
        self._producer.poll(0)  # serve delivery reports
        self._raise_if_failed()
        now = time.monotonic()
        pending = self._pending
        if pending is not None:
            if pending.written is None and pending.outputs.done:
                if not self._still_member():
                    self._pending = None
                    return
                pending.written = self._write_snapshots(pending.snapshots)
            if pending.written is not None and pending.written.done:
                self._raise_if_failed()  # reports served while the snapshots were written
                self._commit(pending.offsets, final=False)
                self._pending = None
            elif not pending.warned and now - pending.taken_at > (
                    self.config.slow_checkpoint_warning_s):
                pending.warned = True
                self._log.warning("checkpoint still awaits acknowledgements",
                                  waiting_s=round(now - pending.taken_at, 1))
            return
        due = now - self._last_checkpoint >= self.config.checkpoint_interval_s
        if self._dirty and self._operators and (due or self._checkpoint_soon):
            self._last_checkpoint = now
            self._checkpoint_soon = False
            snapshots, offsets = self._take_snapshots()
            self._pending = PendingCheckpoint(self._outputs, snapshots, offsets, now)
            self._outputs = Deliveries()
            if self._pending.outputs.done:  # nothing in flight: go on at once
                self._advance_checkpoint()

    def _still_member(self) -> bool:
        """False once the consumer left or lost the group membership its operators were assigned
        under (e.g. the loop stalled past `max.poll.interval.ms`, before the loss is served by a
        poll): the group may have given their partitions to another member already, whose
        checkpoints a snapshot written now would overwrite with older state."""
        if self._consumer.memberid() == self._member_id:
            return True
        self._log.warning("group membership gone; no snapshot written, nothing committed "
                          "(the partitions' next owner resumes from its last checkpoint)",
                          partitions=sorted(self._operators))
        return False

    def _take_snapshots(self) -> tuple[dict[str, dict[str, Any]], list[TopicPartition]]:
        """Every operator's snapshot, and the offsets they make safe to commit."""
        snapshots: dict[str, dict[str, Any]] = {}
        offsets: list[TopicPartition] = []
        for partition, operator in self._operators.items():
            key = checkpoint_key(self.config.name, self.config.input_topics, partition)
            snapshots[key] = operator.snapshot()
            for topic in self.config.input_topics:
                offset = operator.commit_offset(topic)
                if offset is not None:
                    offsets.append(TopicPartition(topic, partition, offset))
        self._dirty = False
        return snapshots, offsets

    def _write_snapshots(self, snapshots: dict[str, dict[str, Any]]) -> Deliveries:
        written = Deliveries()
        for key, state in snapshots.items():
            self._checkpoints.write(key, state, on_delivery=written.track())
        self._producer.poll(0)
        self.stats.checkpoints += 1
        return written

    def _commit(self, offsets: list[TopicPartition], *, final: bool) -> bool:
        """Commit offsets whose snapshots are acknowledged. Asynchronous while running (an
        older commit only means a longer replay); synchronous when leaving.

        A commit the group refuses because it moved on (this member's session expired, for
        example while the broker was down) is skipped: the partitions' next owner resumes from
        the last accepted commit and its checkpoints, as after a crash. False if refused."""
        if offsets and final:
            try:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if not isinstance(error, KafkaError) or error.code() not in _GROUP_MOVED_ON:
                    raise
                self._log.warning("commit refused by the group; the next owner replays from "
                                  "the last accepted commit", error=str(error))
                return False
        elif offsets:
            # an offset this member already committed for its current assignment is not sent
            # again: a window or history that holds its partition's commit offset back would
            # otherwise be committed every checkpoint (the sensor join: 500 offsets a second
            # for the broker to write to __consumer_offsets). A commit that failed is then
            # retried only once the offset moves: an older commit means a longer replay, no
            # more (see above).
            sent = self._committed
            changed = [tp for tp in offsets if sent.get((tp.topic, tp.partition)) != tp.offset]
            if changed:
                self._consumer.commit(offsets=changed, asynchronous=True)
                sent.update(((tp.topic, tp.partition), tp.offset) for tp in changed)
        return True

    def _flush(self) -> None:
        remaining = self._producer.flush(30)
        self._raise_if_failed()
        if remaining:
            raise KafkaException(f"{remaining} messages still unacknowledged after 30 s")

    def _raise_if_failed(self) -> None:
        """A lost output must not be followed by a commit past its input: stop instead (a
        restart replays from the last commit)."""
        awaited = [self._outputs]
        if self._pending is not None:
            awaited += [self._pending.outputs, *filter(None, [self._pending.written])]
        failed = self._fatal or next((d.error for d in awaited if d.error is not None), None)
        if failed is not None:
            raise KafkaException(failed)

    def _on_producer_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
        self._log.warning("kafka producer error", error=str(error), fatal=error.fatal())

    # --- hand-overs (eager rebalances: every revocation is followed by a new assignment) ---
    def _on_assign(self, consumer: object, partitions: list[TopicPartition]) -> None:
        """Build an operator per new partition number, restored from its checkpoint (the last
        owner's state, wherever it ran); the consumer resumes at the committed offsets."""
        began = time.monotonic()
        self._member_id = self._consumer.memberid()
        self._committed.clear()  # the group's offsets may have moved while others held them
        numbers = sorted({tp.partition for tp in partitions} - set(self._operators))
        keys = {checkpoint_key(self.config.name, self.config.input_topics, p): p for p in numbers}
        snapshots = self._checkpoints.load(set(keys)) if keys else {}
        restored: list[int] = []
        for key, number in keys.items():
            operator = self._factory(number)
            if key in snapshots:
                operator.restore(snapshots[key])
                restored.append(number)
            self._operators[number] = operator
        self._group_kinds()
        resumed = self._resume_where_handed_over(partitions)
        self._assigned_at = time.monotonic()
        self._log.info("assigned", partitions=numbers, restored=len(snapshots),
                       from_checkpoint=restored,
                       fresh=[n for n in numbers if n not in restored], resumed_at=resumed,
                       consumed=self.stats.consumed,
                       took_ms=round((self._assigned_at - began) * 1000, 1))

    def _resume_where_handed_over(self, partitions: list[TopicPartition]) -> dict[str, int]:
        """Start the partitions whose restored operator carries its whole state up to an offset
        (`PartitionOperator.resume_offset`) there, not at the committed offset: assigning inside
        the assignment callback sets where consumption starts. Returns them (`topic[p]`)."""
        resumed: dict[str, int] = {}
        for tp in partitions:
            operator = self._operators.get(tp.partition)
            offset = operator.resume_offset(tp.topic) if operator is not None else None
            if offset is not None:
                tp.offset = offset
                resumed[f"{tp.topic}[{tp.partition}]"] = offset
        if resumed:
            self._consumer.assign(partitions)
        return resumed

    def _on_lost(self, consumer: object, partitions: list[TopicPartition]) -> None:
        """The session expired (e.g. the broker was unreachable): the group may already have
        given these partitions to another member, so nothing may be committed or snapshotted
        for them."""
        self._pending = None
        self._log.warning("assignment lost; resuming from the last commit",
                          partitions=sorted({tp.partition for tp in partitions}))
        self._drop(partitions)

    def _on_revoke(self, consumer: object, partitions: list[TopicPartition]) -> None:
        """Hand the partitions over: every output acknowledged, snapshots written, offsets
        committed while this member still owns them; then nothing more for them."""
        began = time.monotonic()
        self._dirty = True
        for number in sorted({tp.partition for tp in partitions}):
            operator = self._operators.get(number)
            if operator is not None:
                operator.hand_over()  # its last snapshot here may carry its whole state
        committed = self.checkpoint(final=True)  # the next owner resumes from these offsets
        self._drop(partitions)
        self._log.info("revoked", partitions=sorted({tp.partition for tp in partitions}),
                       committed={f"{tp.topic}[{tp.partition}]": tp.offset for tp in committed},
                       consumed=self.stats.consumed, produced=self.stats.produced,
                       took_ms=round((time.monotonic() - began) * 1000, 1))

    def _drop(self, partitions: list[TopicPartition]) -> None:
        for number in {tp.partition for tp in partitions}:
            operator = self._operators.pop(number, None)
            if operator is not None:
                operator.close()
        self._group_kinds()
        self._committed.clear()
        for tp in partitions:
            self._at_end.discard((tp.topic, tp.partition))


class AtEnd:
    """The (topic, partition) pairs consumed to the end of their log, and per partition number
    how many of its topics are: the idle check asks for every operator at every step, and a
    count is one lookup where testing each topic was a generator per operator (measured with
    py-spy: ~5% of the sensor join's CPU at 1,000 events/s over 100 partitions x 5 topics)."""

    def __init__(self) -> None:
        self._pairs: set[tuple[str, int]] = set()
        self._per_number: dict[int, int] = {}

    def __contains__(self, pair: object) -> bool:
        return pair in self._pairs

    def add(self, pair: tuple[str, int]) -> None:
        if pair not in self._pairs:
            self._pairs.add(pair)
            self._per_number[pair[1]] = self._per_number.get(pair[1], 0) + 1

    def discard(self, pair: tuple[str | None, int | None]) -> None:
        if pair in self._pairs:
            self._pairs.remove(pair)
            number = int(pair[1] or 0)
            self._per_number[number] -= 1

    def clear(self) -> None:
        self._pairs.clear()
        self._per_number.clear()

    def count(self, number: int) -> int:
        """How many topics of partition `number` are consumed to their end."""
        return self._per_number.get(number, 0)


def _timestamps(messages: Sequence[Message]) -> np.ndarray:
    """Each message's Kafka timestamp in epoch ms (CreateTime or LogAppendTime), or
    `NO_INGESTION_TIME` where the broker gave none (librdkafka then reports -1; a timestamp at
    or before the epoch is no ingestion time either): the ingestion time operators check event
    times against (`features.event_time`). One pass, no per-message type check: this runs on
    every consumed message."""
    stamps = np.fromiter((m.timestamp()[1] for m in messages), np.int64, len(messages))
    stamps[stamps <= 0] = NO_INGESTION_TIME
    return stamps

"""The processor loop: consume micro-batches, run partition operators, produce, checkpoint, commit.

Effectively-once without broker transactions:
1. outputs are keyed deterministically, so producing one twice writes the same value twice;
2. at each checkpoint the producer is flushed (outputs and dead letters are durable), then every
   operator's snapshot is written to the checkpoint topic and flushed, then offsets are committed
   up to what each operator no longer needs (the earliest message of a still-open window);
3. on (re)assignment an operator is restored from its checkpoint and the consumer resumes at the
   committed offset, so open windows are rebuilt from the log and decisions replay identically.
A `kill -9` at any point therefore leaves at worst duplicate outputs with identical values.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

import numpy as np
import structlog
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from streaming.partitioning import partition_for
from streaming.runtime.checkpoint import CheckpointStore, checkpoint_key
from streaming.runtime.clients import make_consumer, make_producer
from streaming.runtime.dead_letter import DeadLetterSink
from streaming.runtime.operator import PartitionOperator
from streaming.runtime.records import Emission, InputBatch, OutputBatch
from streaming.settings import KafkaSettings
from streaming.topics import CHECKPOINTS, DEAD_LETTER

log = structlog.get_logger(__name__)

OperatorFactory = Callable[[int], PartitionOperator]


@dataclass
class ProcessorConfig:
    name: str  # also the consumer group id
    input_topics: tuple[str, ...]
    batch_size: int = 10_000
    poll_timeout_s: float = 0.1
    checkpoint_interval_s: float = 1.0
    max_checkpoint_delay_s: float = 5.0  # then a checkpoint flushes (blocks) if it must
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


class StreamProcessor:
    """Runs one consumer group member. Call :meth:`run` (blocks) or :meth:`step` (one batch)."""

    def __init__(
        self, kafka: KafkaSettings, config: ProcessorConfig, operator_factory: OperatorFactory
    ) -> None:
        self.kafka = kafka
        self.config = config
        self._factory = operator_factory
        self._producer = make_producer(kafka)
        self._consumer = make_consumer(kafka, config.name, error_cb=self._on_client_error,
                                       **config.consumer_overrides)
        self._checkpoints = CheckpointStore(kafka, self._producer, config.checkpoint_topic)
        self._dead_letters = DeadLetterSink(self._producer, config.dead_letter_topic, config.name)
        self._operators: dict[int, PartitionOperator] = {}
        self._at_end: set[tuple[str, int]] = set()  # (topic, partition) consumed to the end
        self._blind: set[int] = set()  # partition numbers to resume after a broker outage
        self._partition_counts: dict[str, int] = {}
        self._last_checkpoint = time.monotonic()
        self._pending_commit: list[TopicPartition] | None = None
        self._assigned_at = time.monotonic()
        self._dirty = False
        self._stopping = False
        self.stats = ProcessorStats()
        self._log = log.bind(processor=config.name)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._consumer.subscribe(
            list(self.config.input_topics), on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        self._log.info("subscribed", topics=self.config.input_topics)

    def run(self, *, max_idle_s: float | None = None, install_signals: bool = True) -> None:
        """Consume until SIGTERM/SIGINT (or `max_idle_s` without messages, for batch replays)."""
        if install_signals:
            signal.signal(signal.SIGTERM, self._request_stop)
            signal.signal(signal.SIGINT, self._request_stop)
        self.start()
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
        messages = self._poll()
        now = time.time()
        emission = Emission()
        batches = self._split(messages)
        work: dict[type[PartitionOperator], list[tuple[PartitionOperator, InputBatch]]] = {}
        for batch in batches:
            operator = self._operators.get(batch.partition)
            if operator is None:  # a message from a partition revoked meanwhile
                continue
            work.setdefault(type(operator), []).append((operator, batch))
        for kind, pairs in work.items():  # one call per operator class: see process_many
            emission.extend(kind.process_many(pairs, int(now * 1000)))
        idle: dict[type[PartitionOperator], list[PartitionOperator]] = {}
        for number, operator in self._operators.items():
            # idleness means "nothing new at the end of the log", not "not consumed yet": a
            # lagging consumer must not close windows that a caught-up one would keep open
            if all((topic, number) in self._at_end for topic in self.config.input_topics):
                if number in self._blind:
                    self._blind.discard(number)
                    operator.on_resume(int(now * 1000))
                idle.setdefault(type(operator), []).append(operator)
        for kind, operators in idle.items():
            emission.extend(kind.tick_many(operators, int(now * 1000)))
        self._emit(emission)
        consumed = sum(len(b) for b in batches)
        if consumed:
            self.stats.consumed += consumed
            self.stats.batches += 1
        if consumed or emission.output_count or emission.dead_letters:
            self._dirty = True
        if emission.closed_on_idle:
            self.checkpoint()
        else:
            self._checkpoint_when_delivered()
        return consumed

    def _poll(self) -> list[Message]:
        """What is already fetched, up to a batch; if nothing, wait for the first message (up
        to the poll timeout) and take what arrived with it. A live stream is handled as soon
        as it arrives instead of after a fixed wait; a backlog still comes in full batches."""
        messages = self._consumer.consume(self.config.batch_size, 0)
        if messages:
            return messages
        first = self._consumer.poll(self.config.poll_timeout_s)
        if first is None:
            return []
        return [first, *self._consumer.consume(self.config.batch_size - 1, 0)]

    def _split(self, messages: Sequence[Message]) -> list[InputBatch]:
        """Group a consumed list into per-topic-partition batches, keeping offset order."""
        groups: dict[tuple[str, int], list[Message]] = {}
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add((str(msg.topic()), int(msg.partition() or 0)))
                else:
                    self._log.warning("consume error", error=str(err))
                continue
            tp = (str(msg.topic()), int(msg.partition() or 0))
            group = groups.get(tp)
            if group is None:
                group = groups[tp] = []
                self._at_end.discard(tp)
            group.append(msg)
        return [
            InputBatch(topic, partition,
                       np.fromiter((m.offset() for m in group), np.int64, len(group)),
                       [m.key() for m in group], [m.value() for m in group])
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
        for record in emission.records:
            partition = partition_for(record.partition_key, self._partitions(record.topic))
            while True:
                try:
                    self._producer.produce(
                        record.topic, key=record.key, value=record.value, partition=partition
                    )
                    break
                except BufferError:  # local queue full: let librdkafka drain it
                    self._producer.poll(0.1)
            self._producer.poll(0)
        for batch in emission.batches:
            self._emit_batch(batch)
        if emission.dead_letters:
            self._dead_letters.send(emission.dead_letters)
        self.stats.produced += emission.output_count
        self.stats.dead_letters += len(emission.dead_letters)

    def _emit_batch(self, batch: OutputBatch) -> None:
        count = self._partitions(batch.topic)
        partitions = {k: partition_for(k, count) for k in set(batch.partition_keys)}
        produce, topic = self._producer.produce, batch.topic
        for key, value, pkey in zip(batch.keys, batch.values, batch.partition_keys, strict=True):
            while True:
                try:
                    produce(topic, key=key, value=value, partition=partitions[pkey])
                    break
                except BufferError:  # local queue full: let librdkafka drain it
                    self._producer.poll(0.1)
        self._producer.poll(0)

    def _partitions(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            meta = self._producer.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise KafkaException(meta.error)
            count = self._partition_counts[topic] = len(meta.partitions)
        return count

    # --- checkpoints -----------------------------------------------------------------------
    def checkpoint(self, *, final: bool = False) -> None:
        """Make outputs durable, write operator snapshots, then commit safe offsets (blocking)."""
        self._last_checkpoint = time.monotonic()
        if self._pending_commit is not None:  # an earlier checkpoint still awaits delivery
            self._flush()
            self._commit(self._pending_commit, final=final)
        if not self._operators or not self._dirty:
            return
        self._flush()
        offsets = self._write_snapshots()
        self._flush()
        self._commit(offsets, final=final)

    def _checkpoint_when_delivered(self) -> None:
        """The same protocol without blocking the loop: snapshots are written at a moment when
        every earlier output is already acknowledged (nothing in flight), and the offsets are
        committed once the snapshots are acknowledged in turn. Under a continuous output
        stream that moment may not come: after `max_checkpoint_delay_s` it flushes."""
        now = time.monotonic()
        self._producer.poll(0)  # serve delivery reports, so the in-flight count is current
        idle_producer = len(self._producer) == 0
        if self._pending_commit is not None:
            if idle_producer:
                self._commit(self._pending_commit, final=False)
            elif now - self._last_checkpoint >= self.config.max_checkpoint_delay_s:
                self.checkpoint()
            return
        if not self._dirty or now - self._last_checkpoint < self.config.checkpoint_interval_s:
            return
        if idle_producer and self._operators:
            self._last_checkpoint = now
            self._pending_commit = self._write_snapshots()
        elif now - self._last_checkpoint >= self.config.max_checkpoint_delay_s:
            self.checkpoint()

    def _write_snapshots(self) -> list[TopicPartition]:
        """Queue every operator's snapshot; returns the offsets they make safe to commit."""
        offsets: list[TopicPartition] = []
        for partition, operator in self._operators.items():
            key = checkpoint_key(self.config.name, self.config.input_topics, partition)
            self._checkpoints.write(key, operator.snapshot())
            for topic in self.config.input_topics:
                offset = operator.commit_offset(topic)
                if offset is not None:
                    offsets.append(TopicPartition(topic, partition, offset))
        self._dirty = False
        self.stats.checkpoints += 1
        return offsets

    def _commit(self, offsets: list[TopicPartition], *, final: bool) -> None:
        """Commit offsets whose snapshots are acknowledged. Asynchronous while running (an
        older commit only means a longer replay); synchronous when leaving."""
        self._pending_commit = None
        if offsets and final:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        elif offsets:
            self._consumer.commit(offsets=offsets, asynchronous=True)

    def _flush(self) -> None:
        remaining = self._producer.flush(30)
        if remaining:
            raise KafkaException(f"{remaining} messages still unflushed after 30 s")

    def _on_assign(self, consumer: object, partitions: list[TopicPartition]) -> None:
        numbers = sorted({tp.partition for tp in partitions} - set(self._operators))
        keys = {checkpoint_key(self.config.name, self.config.input_topics, p): p for p in numbers}
        snapshots = self._checkpoints.load(set(keys)) if keys else {}
        for key, number in keys.items():
            operator = self._factory(number)
            if key in snapshots:
                operator.restore(snapshots[key])
            self._operators[number] = operator
        self._assigned_at = time.monotonic()
        self._log.info("assigned", partitions=numbers, restored=len(snapshots))

    def _on_revoke(self, consumer: object, partitions: list[TopicPartition]) -> None:
        self._dirty = True
        self.checkpoint(final=True)  # the next owner resumes from these offsets
        for number in {tp.partition for tp in partitions}:
            operator = self._operators.pop(number, None)
            if operator is not None:
                operator.close()
        self._at_end -= {(tp.topic, tp.partition) for tp in partitions}
        self._log.info("revoked", partitions=sorted({tp.partition for tp in partitions}))

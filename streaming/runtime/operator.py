"""The operator interface: the state and logic of one partition (number) of a processor.

The processor owns Kafka; an operator owns event time and windows. For each assigned partition
number the processor builds one operator (co-partitioned input topics share it), restores it from
its checkpoint, feeds it batches, asks it which offsets are safe to commit, and snapshots it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

from streaming.runtime.records import Emission, InputBatch

Snapshot = dict[str, Any]


class PartitionOperator(ABC):
    """Stateful logic for one partition number. Implementations must be deterministic: replaying
    the same messages from the committed offsets after `restore` gives the same outputs."""

    @abstractmethod
    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        """Handle consecutive messages of one input topic-partition."""

    @classmethod
    def process_many(cls, work: Sequence[tuple[PartitionOperator, InputBatch]],
                     now_ms: int) -> Emission:
        """One poll's batches for this class's operators, in poll order. Operators that share
        state across partitions override it to handle every partition in one vectorized pass
        (the cost of a poll then does not grow with the partition count). Default: `process`
        batch by batch."""
        emission = Emission()
        for operator, batch in work:
            emission.extend(operator.process(batch, now_ms))
        return emission

    @classmethod
    def tick_many(cls, operators: Sequence[PartitionOperator], now_ms: int) -> Emission:
        """`tick` for several caught-up operators of this class at once. Default: one by one."""
        emission = Emission()
        for operator in operators:
            emission.extend(operator.tick(now_ms))
        return emission

    @classmethod
    def retry_after_s(cls, operators: Sequence[PartitionOperator]) -> float | None:
        """How soon these operators want another `tick_many` even if no message comes (e.g.
        rows waiting on an outside store): the processor's poll waits at most this long. None
        (default): the processor's poll timeout."""
        return None

    def close(self) -> None:  # noqa: B027 - an optional hook
        """Called once the partition is revoked (after its last checkpoint): release shared
        state held for it. Default: nothing."""

    def tick(self, now_ms: int) -> Emission:
        """Called after a poll with the wall clock while this partition number is caught up
        (every input topic consumed to its end), so windows of quiet keys can close on
        idleness. An emission with `closed_on_idle` makes the processor checkpoint at once."""
        return Emission()

    def on_resume(self, now_ms: int) -> None:  # noqa: B027 - an optional hook
        """Called when this partition is caught up again after the processor lost the broker:
        time spent blind must not count as quiet time. Default: nothing."""

    def hand_over(self) -> None:  # noqa: B027 - an optional hook
        """Called when the partition is about to leave this process (revocation, close), just
        before its last checkpoint here: the snapshot taken next may carry the operator's whole
        state, so that the next owner resumes where this one stopped (`resume_offset`) instead of
        rebuilding its state from the committed offset. Default: nothing."""

    def resume_offset(self, topic: str) -> int | None:
        """After `restore`: the offset to resume `topic` from when the snapshot carried the whole
        state up to it (`hand_over`); None (default): the committed offset. The operator must
        decide the same either way (a consumer that resumes at the committed offset instead
        replays messages the restored state already holds)."""
        return None

    @abstractmethod
    def commit_offset(self, topic: str) -> int | None:
        """The offset a restart must resume `topic` from (None: nothing consumed yet)."""

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """JSON-serialisable state written to the checkpoint topic before offsets are committed."""

    @abstractmethod
    def restore(self, snapshot: Snapshot) -> None:
        """Load a snapshot (called before any message of this partition is processed)."""


class SharedGroup(Protocol):
    """State shared by the operators of several partitions, processed in one vectorized pass."""

    def process_many(self, batches: list[tuple[int, InputBatch]], now_ms: int) -> Emission: ...


class GroupMember(Protocol):
    partition: int

    @property
    def group(self) -> SharedGroup: ...


def process_by_group(work: Sequence[tuple[PartitionOperator, InputBatch]],
                     now_ms: int) -> Emission:
    """`process_many` for operators that delegate to a shared group (`operator.group`): one call
    per group with its (partition, batch) pairs, in poll order."""
    emission = Emission()
    by_group: dict[int, tuple[SharedGroup, list[tuple[int, InputBatch]]]] = {}
    for operator, batch in work:
        member: GroupMember = operator  # type: ignore[assignment]
        entry = by_group.setdefault(id(member.group), (member.group, []))
        entry[1].append((member.partition, batch))
    for group, batches in by_group.values():
        emission.extend(group.process_many(batches, now_ms))
    return emission

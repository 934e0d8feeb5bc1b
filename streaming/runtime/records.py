"""What flows through an operator: input batches, output records, dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class InputBatch:
    """Consecutive messages of one topic-partition, in offset order.

    `timestamps` holds each message's Kafka timestamp (CreateTime or LogAppendTime, epoch ms;
    `features.event_time.NO_INGESTION_TIME` where the message has none), the ingestion time
    the event-time sanity rule compares against; None when the batch was not read from Kafka
    (tests, in-process replays), and the rule then does not apply.
    """

    topic: str
    partition: int
    offsets: np.ndarray  # int64
    keys: list[bytes | None]
    values: list[bytes | None]
    timestamps: np.ndarray | None = None  # int64, aligned with `offsets`

    def __len__(self) -> int:
        return len(self.values)


def merged_timestamps(batches: Sequence[InputBatch]) -> np.ndarray | None:
    """The `timestamps` of several batches concatenated (for an operator that merges batches),
    None unless every batch has them."""
    if not batches or any(b.timestamps is None for b in batches):
        return None
    return np.concatenate([b.timestamps for b in batches if b.timestamps is not None])


@dataclass(frozen=True)
class OutputRecord:
    """A record to produce. `partition_key` picks the partition (e.g. the pair), so all of one
    pair's records stay in order on one partition whatever the message key is; `partition`, if
    set, names it instead (a record an operator writes back into the partition it reads)."""

    topic: str
    key: str
    value: bytes
    partition_key: str
    partition: int | None = None


@dataclass(frozen=True)
class OutputBatch:
    """Records of one topic as columns: what a vectorized operator emits instead of many
    :class:`OutputRecord` objects (same meaning, row by row; produced in row order)."""

    topic: str
    keys: list[str]
    values: list[bytes]
    partition_keys: list[str]

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class DeadLetter:
    """A rejected input message and why."""

    reason: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Emission:
    """An operator's answer to a batch or an idle tick."""

    records: list[OutputRecord] = field(default_factory=list)
    batches: list[OutputBatch] = field(default_factory=list)  # produced after `records`
    dead_letters: list[DeadLetter] = field(default_factory=list)
    closed_on_idle: bool = False  # the processor checkpoints at once after an idle close

    @property
    def output_count(self) -> int:
        return len(self.records) + sum(len(b) for b in self.batches)

    def extend(self, other: Emission) -> None:
        self.records.extend(other.records)
        self.batches.extend(other.batches)
        self.dead_letters.extend(other.dead_letters)
        self.closed_on_idle |= other.closed_on_idle

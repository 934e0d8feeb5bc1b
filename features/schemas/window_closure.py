"""The window closure record: the `trades` log's own statement that a pair's windows are closed.

A closure record travels in the `trades` topic among the trades, keyed and partitioned by its
pair, so it has a place in the pair's arrival order like a trade. From that place on, it closes
the pair's windows of `window_ms` (every duration where `window_ms` is null) that contain an
event time at or before `through_ms`: a later trade of such a window is late by that closure
(`features.windows.lateness`). Both engines read the same records in the same order (the stream
consumes them, the batch reads the topic or an archive of it), so both drop the same trades; every
candle processor reading the topic obeys every closure record of its durations, whoever wrote it.

Who writes one, and why (its `rule`):
- `idle`: the candle processor, when a live pair has been quiet for the idle timeout and a window
  of it is over by the wall clock. The wall-clock decision is written into the log instead of
  being taken alone: the processor closes the window only when it reads its own record back.
- `end_of_input`: a finite source that has delivered everything (a file replay, a REST backfill
  with an end), so the last windows of a history close without waiting for later trades.

On the wire it is a JSON object: `{"v": 1, "closure": "idle", "pair": "XBT/USD",
"window_ms": 60000, "through_ms": 1525752719999, "decided_at_ms": 1765000000000,
"by": "braid-candles"}`. The `closure` field tells it from a trade (a trade has no such field);
`decided_at_ms` (the writer's wall clock) and `by` (who wrote it) are for people reading the log.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.schemas.trade import MAX_PAIR_LENGTH

CLOSURE_SCHEMA_VERSION = 1
CLOSURE_FIELD = "closure"
CLOSURE_TAG = b'"closure"'
"""Bytes every closure record holds (a quick test before parsing a message as one)."""


class ClosureRule(StrEnum):
    """Why a closure record was written."""

    IDLE = "idle"
    END_OF_INPUT = "end_of_input"

    @property
    def text(self) -> str:
        """How a dead letter names the rule: `closed on idle`, `closed at end of input`."""
        return {ClosureRule.IDLE: "closed on idle",
                ClosureRule.END_OF_INPUT: "closed at end of input"}[self]


class WindowClosure(BaseModel):
    """One closure record (see the module docstring for its meaning)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int = CLOSURE_SCHEMA_VERSION
    closure: ClosureRule
    pair: str = Field(min_length=1, max_length=MAX_PAIR_LENGTH)
    window_ms: int | None = Field(default=None, gt=0)  # None: every duration
    through_ms: int = Field(gt=0)
    decided_at_ms: int = 0
    by: str = ""

    @field_validator("v")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != CLOSURE_SCHEMA_VERSION:
            raise ValueError(f"unsupported closure version {value}")
        return value

    def to_wire(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    def applies_to(self, window_ms: int) -> bool:
        return self.window_ms is None or self.window_ms == window_ms


def is_closure(raw: bytes | None) -> bool:
    """Whether a message (or an archive's JSON line) is a closure record rather than a trade:
    a JSON object with a `closure` field (checked cheaply first)."""
    if raw is None or CLOSURE_TAG not in raw:
        return False
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and CLOSURE_FIELD in obj


def parse_closure(raw: bytes | dict[str, Any]) -> WindowClosure:
    """A closure record from its message (or its decoded object); `ValueError` saying why it is
    not a valid one."""
    try:
        obj = orjson.loads(raw) if isinstance(raw, bytes) else raw
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        # fields an archive merges into every record (the Kafka offset and timestamp)
        obj = {k: v for k, v in obj.items() if not k.startswith("kafka_")}
        return WindowClosure.model_validate(obj, strict=False)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ValueError(f"invalid closure record: {where}: {error['msg']}") from None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"invalid closure record: not JSON ({exc.msg})") from None

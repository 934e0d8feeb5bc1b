"""Event-time sanity: a record may not claim to have happened far after it was ingested.

A record's event time (`timestamp_ms` in its payload) moves its key's stream time forward, and
stream time never moves back; one record stamped in the far future (`10**18`, a typo of a few
digits, a clock gone wrong) would make every later record of its key late, for ever. So a record
whose event time lies more than `max_skew_ms` ahead of its **ingestion time** is invalid: it is
rejected with :func:`skew_reason` before it can touch stream time.

The ingestion time is the Kafka record's timestamp (CreateTime as the producer stamped it, or
LogAppendTime when the topic is configured so). Both engines see it: the stream processor on
every consumed message, the batch layer in an archive of the topic that keeps it (the JSON lines
and Parquet trade archives' `kafka_timestamp_ms`, Spark's Kafka source's `timestamp`), so both
reject exactly the same records. Where no ingestion time is known (`NO_INGESTION_TIME`: a Kafka
message without a timestamp, a Kraken CSV export, a hand-written file), the rule does not apply.

The default maximum skew is one hour: far more than any honest clock difference between an
exchange, a sensor gateway and the broker (NTP keeps them within milliseconds; a sensor that
buffers readings offline sends them *after* their event time, which this rule never rejects),
and small enough that a wrong record can push a key's stream time at most an hour ahead, which
records arriving on time then catch up with. Records from the past are never rejected here:
lateness (`features.windows`) decides about those.

A producer sets CreateTime itself, so one that stamps both times wrong passes; topics written by
untrusted producers should use `message.timestamp.type=LogAppendTime` (or, on Kafka 3.6+, bound
CreateTime at the broker with `message.timestamp.after.max.ms`).
"""

from __future__ import annotations

import numpy as np

DEFAULT_MAX_EVENT_TIME_SKEW_MS = 3_600_000
"""How far (ms) an event time may lie ahead of its record's ingestion time: one hour."""

NO_INGESTION_TIME = -1
"""The ingestion time of a record whose source does not say (the rule then does not apply)."""


def ahead_of_ingestion(
    event_ms: np.ndarray, ingestion_ms: np.ndarray, max_skew_ms: int
) -> np.ndarray:
    """Per record, True where its event time lies more than `max_skew_ms` after its ingestion
    time (a negative ingestion time means unknown: never True). Exactly `max_skew_ms` ahead is
    still valid."""
    if max_skew_ms < 0:
        raise ValueError(f"max_skew_ms must be non-negative, got {max_skew_ms}")
    event = np.asarray(event_ms, dtype=np.int64)
    ingestion = np.asarray(ingestion_ms, dtype=np.int64)
    known = ingestion >= 0
    # event - ingestion could overflow for extreme values; the bound below cannot
    limit = np.minimum(np.where(known, ingestion, 0), np.iinfo(np.int64).max - max_skew_ms)
    limit += max_skew_ms
    return known & (event > limit)


def skew_reason(max_skew_ms: int) -> str:
    """The rejection reason of a record too far ahead of its ingestion time."""
    return (f"timestamp_ms is more than {max_skew_ms} ms ahead of the record's "
            "ingestion time (its Kafka timestamp)")

"""Decode micro-batches of sensor readings (SX, SY, SZ) and feature rows (FA, FI, FD) into
columns, rejecting bad messages with a reason (rules from `features.sensors.schemas`; for
readings, also `features.event_time`: a reading stamped too far ahead of its Kafka timestamp;
for both, `features.entity_keys`: a message whose Kafka key is not its client)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.entity_keys import first_reason, foreign_key_reasons
from features.event_time import (
    DEFAULT_MAX_EVENT_TIME_SKEW_MS,
    ahead_of_ingestion,
    skew_reason,
)
from features.sensors.schemas import (
    BIN_COUNT,
    FEATURE_WIRE_SCHEMA,
    MAX_CLIENT_LENGTH,
    MAX_TIMESTAMP_MS,
    READING_WIRE_SCHEMA,
    SENSOR_SCHEMA_VERSION,
    invalid_reading_reasons,
)
from streaming.runtime.json_batch import decode_json_batch
from streaming.runtime.records import InputBatch


@dataclass
class Decoded:
    """The valid rows of a batch as columns (arrival order), their offsets, and every row's
    reason (None = valid) aligned with the batch."""

    table: pa.Table
    offsets: np.ndarray
    reasons: np.ndarray


SMALL = 256  # below this many rows, plain Python beats Arrow compute's per-call overhead


def _client_checks(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    if table.num_rows < SMALL:
        clients = table["client"].to_pylist()
        length = np.array([len(c) if c is not None else 0 for c in clients], dtype=np.int64)
        has_bar = np.array([c is not None and "|" in c for c in clients], dtype=bool)
        return length, has_bar
    length = pc.fill_null(pc.utf8_length(table["client"]), 0).to_numpy()
    has_bar = pc.fill_null(pc.match_substring(table["client"], "|"), False).to_numpy(
        zero_copy_only=False)
    return length, has_bar


def _filled(table: pa.Table, name: str, value: object) -> np.ndarray:
    column = table[name]
    if column.null_count == 0:
        return column.to_numpy()
    return pc.fill_null(column, value).to_numpy()


def _keep(batch: InputBatch, table: pa.Table, reasons: np.ndarray,
          columns: list[str]) -> Decoded:
    valid = reasons == None  # noqa: E711 - elementwise
    selected = table.select(columns)
    if not valid.all():
        selected = selected.filter(pa.array(valid))
    return Decoded(selected, batch.offsets[valid], reasons)


def decode_readings(batch: InputBatch, sensor: str,
                    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS) -> Decoded:
    """Readings of topic `batch.topic` holding sensor `sensor` (SX, SY or SZ). When the batch
    has its Kafka timestamps, a reading whose event time lies more than
    `max_event_time_skew_ms` ahead of its message's timestamp is invalid."""
    decoded = decode_json_batch(batch, READING_WIRE_SCHEMA)
    table, reasons = decoded.table, decoded.reasons
    length, has_bar = _client_checks(table)
    rules = invalid_reading_reasons(
        sensor, _filled(table, "v", -1), length, has_bar, _filled(table, "timestamp_ms", 0),
        _filled(table, "value", np.nan))
    reasons = np.where(reasons == None, rules, reasons)  # noqa: E711
    if batch.timestamps is not None and table.num_rows:
        ahead = ahead_of_ingestion(_filled(table, "timestamp_ms", 0), batch.timestamps,
                                   max_event_time_skew_ms)
        ahead &= reasons == None  # noqa: E711 - elementwise; the first broken rule wins
        if ahead.any():
            reasons[ahead] = "invalid: " + skew_reason(max_event_time_skew_ms)
    reasons = _reject_foreign_keys(batch, table, reasons)
    return _keep(batch, table, reasons, ["client", "timestamp_ms", "value"])


def _reject_foreign_keys(batch: InputBatch, table: pa.Table, reasons: np.ndarray) -> np.ndarray:
    """`reasons` with the key reason on otherwise valid rows whose Kafka key is not their
    client (`features.entity_keys`)."""
    if not table.num_rows:
        return reasons
    valid = pa.array(reasons == None)  # noqa: E711 - elementwise
    clients = pc.if_else(valid, table["client"], pa.scalar(None, pa.string()))
    return first_reason(reasons, foreign_key_reasons(batch.keys, clients, "client"))


def decode_features(batch: InputBatch, feature: str) -> Decoded:
    """Feature rows of topic `batch.topic`, which must all be feature `feature` (the rules of
    `features.sensors.schemas.FeatureRow`, column by column)."""
    decoded = decode_json_batch(batch, FEATURE_WIRE_SCHEMA)
    table, reasons = decoded.table, decoded.reasons
    length, has_bar = _client_checks(table)
    missing = np.zeros(table.num_rows, dtype=bool)
    for name in FEATURE_WIRE_SCHEMA.names:
        if table[name].null_count:
            missing |= table[name].is_null().to_numpy(zero_copy_only=False)
    names = np.array(table["feature"].to_pylist(), dtype=object)
    bins = _filled(table, "bin", -1)
    checks = (
        (missing, "schema: missing field"),
        (_filled(table, "v", -1) != SENSOR_SCHEMA_VERSION, "schema: unsupported version"),
        ((length == 0) | (length > MAX_CLIENT_LENGTH) | has_bar, "schema: invalid client"),
        (names != feature, f"schema: feature is not {feature}"),
        (_filled(table, "timestamp_ms", 0) <= 0, "invalid: timestamp_ms must be positive"),
        (_filled(table, "timestamp_ms", 0) >= MAX_TIMESTAMP_MS,
         "invalid: timestamp_ms beyond the year 2248"),
        ((bins < 0) | (bins >= BIN_COUNT), f"invalid: bin must be in 0..{BIN_COUNT - 1}"),
        (pc.fill_null(pc.utf8_length(table["edges_version"]), 0).to_numpy() == 0,
         "schema: edges_version must be a non-empty string"),
        (_filled(table, "window_ms", 0) <= 0, "invalid: window_ms must be positive"),
        (_filled(table, "count", 0) < 1, "invalid: count must be at least 1"),
    )
    rules = np.full(table.num_rows, None, dtype=object)
    for mask, reason in reversed(checks):
        rules[mask] = reason
    reasons = np.where(reasons == None, rules, reasons)  # noqa: E711
    reasons = _reject_foreign_keys(batch, table, reasons)
    return _keep(batch, table, reasons, ["client", "timestamp_ms", "bin", "edges_version"])

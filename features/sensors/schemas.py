"""Wire and column schemas of the sensors pipeline (schema version 1).

- A **reading** (topics SX, SY, SZ; Kafka key = client) is the JSON object
  `{"v": 1, "client": str, "timestamp_ms": int, "value": number}`. `timestamp_ms` is the event
  time in epoch milliseconds (UTC). SX and SY values are categories: integers in
  `0..CATEGORY_COUNT-1`; SZ values are finite floats of magnitude at most `MAX_SZ_MAGNITUDE`.
- A **feature row** (topics FA, FI, FD; key = client) is one window feature of one SZ reading:
  `{"v": 1, "client", "feature", "timestamp_ms", "value", "bin", "edges_version", "window_ms",
  "count"}`; `timestamp_ms` is the SZ reading's event time, `value` the raw feature, `bin` its
  bucket under the bin edges `edges_version`, `count` the readings in the window. A row is
  identified by (client, feature, timestamp_ms): a replay rewrites the same values.
- A **prediction** (topic predictions.sensors; key = `client|timestamp_ms|trigger`, partitioned
  by client): `{"v": 1, "client", "timestamp_ms", "trigger", "vector", "probability", "alert",
  "threshold", "model_version", "edges_version"}`: the 5-integer vector in :data:`VECTOR_FIELDS`
  order (`features.sensors.vectors.RULE`), the probability, the alert decision and the model
  version, for the event of sensor `trigger` (SX, SY or SZ) at `timestamp_ms`. The same key again
  later in the topic is a correction (a late input within grace changed the vector); the last
  message of a key is its final prediction. The join writes it
  (`streaming.processors.sensor_join`); the API's `GET /alerts/{client}` documents it for its
  readers (`serving/api/app.py`, `Alert`).

Readings and predictions are defined by these formats and by the column rules below, which the
decoders apply; :class:`FeatureRow` states a feature row's rules one record at a time, and the
decoder's test holds the columns to it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

SENSOR_SCHEMA_VERSION = 1
CATEGORY_COUNT = 10  # SX and SY categories are 0..9
BIN_COUNT = 10  # FA, FI, FD buckets are 0..9
CATEGORICAL_SENSORS = ("SX", "SY")
CONTINUOUS_SENSOR = "SZ"
SENSORS = ("SX", "SY", "SZ")
FEATURES = ("FA", "FI", "FD")
VECTOR_FIELDS = ("SX", "SY", "FA", "FI", "FD")  # the model's input order
# partitions of each sensors topic by default (`BRAID_TOPIC_SENSOR_PARTITIONS`); the lateness
# rule is per topic-partition, so the training rows need the stream's count
DEFAULT_SENSOR_PARTITIONS = 100
MAX_CLIENT_LENGTH = 64
MAX_TIMESTAMP_MS = 1 << 43  # exclusive: about the year 2248 (keeps sort keys in 64 bits)
#: Largest SZ magnitude accepted. The window features sum values and their pairs over a
#: client's series (FA, FI) and divide differences by milliseconds (FD): under 1e100 none of
#: them can overflow to inf (and from there to NaN), which two readings near the float maximum
#: did. No physical sensor comes near it.
MAX_SZ_MAGNITUDE = 1e100

Sensor = Literal["SX", "SY", "SZ"]
FeatureName = Literal["FA", "FI", "FD"]

# Nullable on purpose: a missing field decodes to null and is rejected by row, not by batch.
READING_WIRE_SCHEMA = pa.schema([
    pa.field("v", pa.int64()),
    pa.field("client", pa.string()),
    pa.field("timestamp_ms", pa.int64()),
    pa.field("value", pa.float64()),
])
READING_ARROW_SCHEMA = pa.schema([
    pa.field("client", pa.string(), nullable=False),
    pa.field("timestamp_ms", pa.int64(), nullable=False),
    pa.field("value", pa.float64(), nullable=False),
])
FEATURE_WIRE_SCHEMA = pa.schema([
    pa.field("v", pa.int64()),
    pa.field("client", pa.string()),
    pa.field("feature", pa.string()),
    pa.field("timestamp_ms", pa.int64()),
    pa.field("value", pa.float64()),
    pa.field("bin", pa.int64()),
    pa.field("edges_version", pa.string()),
    pa.field("window_ms", pa.int64()),
    pa.field("count", pa.int64()),
])
FEATURE_ARROW_SCHEMA = pa.schema([f.with_nullable(False) for f in FEATURE_WIRE_SCHEMA
                                  if f.name != "v"])
# The offline store's wide row: one per SZ reading, all three features.
FEATURE_TABLE_SCHEMA = pa.schema([
    pa.field("client", pa.string(), nullable=False),
    pa.field("timestamp_ms", pa.int64(), nullable=False),
    pa.field("window_ms", pa.int64(), nullable=False),
    pa.field("count", pa.int64(), nullable=False),
    *(pa.field(name, pa.float64(), nullable=False) for name in FEATURES),
    *(pa.field(f"{name}_bin", pa.int64(), nullable=False) for name in FEATURES),
    pa.field("edges_version", pa.string(), nullable=False),
])


def _check_client(value: str) -> str:
    if "|" in value:
        raise ValueError("client must not contain '|', the key separator")
    return value


class FeatureRow(BaseModel):
    """One window feature of one SZ reading (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client: str = Field(min_length=1, max_length=MAX_CLIENT_LENGTH)
    feature: FeatureName
    timestamp_ms: int = Field(gt=0, lt=MAX_TIMESTAMP_MS)
    value: float = Field(allow_inf_nan=False)
    bin: int = Field(ge=0, lt=BIN_COUNT)
    edges_version: str = Field(min_length=1)
    window_ms: int = Field(gt=0)
    count: int = Field(ge=1)

    @field_validator("client")
    @classmethod
    def _client_has_no_separator(cls, value: str) -> str:
        return _check_client(value)


def invalid_reading_reasons(
    sensor: str,
    version: np.ndarray,
    client_length: np.ndarray,
    client_has_bar: np.ndarray,
    timestamp_ms: np.ndarray,
    value: np.ndarray,
) -> np.ndarray:
    """The rules of a reading of topic `sensor` (module docstring), column by column: the one
    definition, applied by the stream's decoder (`streaming.processors.sensor_decoding`) and the
    sensors backfill.

    Inputs have nulls already replaced (version -1, length 0, timestamp 0, value NaN). Returns an
    object array: None for a valid row, else the first failing rule's reason.
    """
    reasons = np.full(len(value), None, dtype=object)
    finite = np.isfinite(value)
    checks: list[tuple[np.ndarray, str]] = [
        (version != SENSOR_SCHEMA_VERSION, "schema: unsupported version"),
        ((client_length == 0) | (client_length > MAX_CLIENT_LENGTH) | client_has_bar,
         "schema: invalid client"),
        (timestamp_ms <= 0, "invalid: timestamp_ms must be positive"),
        (timestamp_ms >= MAX_TIMESTAMP_MS, "invalid: timestamp_ms beyond the year 2248"),
        (~finite, "invalid: value is not a finite number"),
        (finite & (np.abs(np.where(finite, value, 0.0)) > MAX_SZ_MAGNITUDE),
         f"invalid: value beyond +-{MAX_SZ_MAGNITUDE:g}"),
    ]
    if sensor in CATEGORICAL_SENSORS:
        safe = np.where(finite, value, 0.0)
        bad = finite & ((np.floor(safe) != safe) | (safe < 0) | (safe >= CATEGORY_COUNT))
        checks.append((bad, f"invalid: {sensor} must be an integer category in "
                            f"0..{CATEGORY_COUNT - 1}"))
    for mask, reason in reversed(checks):  # the first failing rule wins
        reasons[mask] = reason
    return reasons

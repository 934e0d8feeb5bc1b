"""Feast 0.67's Redis online format, written without Feast's per-row objects.

What `feast.infra.online_stores.redis.RedisOnlineStore.online_write_batch` writes, byte for byte
(checked against it by `tests/integration/serving/test_redis_bulk_writer.py`):

- one hash per entity: key = `serialize_entity_key(entity key) + project` (Feast's
  `_redis_key`);
- per feature a field `mmh3("<view>:<feature>")` (4 bytes, Feast's `_mmh3`) holding the
  serialized `feast.types.Value` (`double_val`, `int64_val`, `string_val`; a null or NaN float
  is the empty `Value`, as Feast writes it);
- `_ts:<view>`: the serialized `google.protobuf.Timestamp` of the row's event time.

Encoders are chosen once per feature from its Feast type; types outside the fast ones go through
Feast's own `python_values_to_proto_values`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

from feast import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key, serialize_entity_key_prefix
from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.repo_config import RepoConfig
from feast.type_map import python_values_to_proto_values
from feast.types import Float64, Int64, String
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

Encoder = Callable[[object], bytes]
"""One feature value -> the serialized `Value` (raises `ValueError` for a wrong type)."""

_DOUBLE = struct.Struct("<Bd")
_UINT32 = struct.Struct("<I")
_DOUBLE_TAG = 0x29  # field 5 (double_val), wire type 1 (64-bit)
_INT64_TAG = b"\x20"  # field 4 (int64_val), varint
_STRING_TAG = b"\x12"  # field 2 (string_val), length-delimited
NULL = b""  # the empty Value: Feast's null


def varint(value: int) -> bytes:
    """Protobuf's base-128 varint of a (two's complement, 64-bit) integer."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_double(value: object) -> bytes:
    if value is None:
        return NULL
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError("must be a number")
    number = float(value)
    return NULL if math.isnan(number) else _DOUBLE.pack(_DOUBLE_TAG, number)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def encode_int64(value: object) -> bytes:
    if value is None:
        return NULL
    if isinstance(value, float):
        if math.isnan(value):
            return NULL
        if not value.is_integer():
            raise ValueError("must be an integer")
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("must be an integer")
    if not _INT64_MIN <= value <= _INT64_MAX:  # varint would encode it, Feast read it wrong
        raise ValueError("is beyond the 64-bit integer range")
    return _INT64_TAG + varint(value)


def encode_string(value: object) -> bytes:
    if value is None:
        return NULL
    if not isinstance(value, str):
        raise ValueError("must be a string")
    data = value.encode()
    return _STRING_TAG + varint(len(data)) + data


def _feast_encoder(view: FeatureView, name: str) -> Encoder:
    value_type = next(f for f in view.features if f.name == name).dtype.to_value_type()

    def encode(value: object) -> bytes:
        try:
            return python_values_to_proto_values([value], value_type)[0].SerializeToString()
        except Exception as error:  # Feast raises TypeError, ValueError and its own errors
            raise ValueError(str(error)) from error

    return encode


def encoders(view: FeatureView) -> dict[str, Encoder]:
    """Feature name -> encoder of its values, from the view's Feast types."""
    fast: dict[object, Encoder] = {Float64: encode_double, Int64: encode_int64,
                                   String: encode_string}
    return {f.name: fast.get(f.dtype) or _feast_encoder(view, f.name) for f in view.features}


def view_name(view: FeatureView, config: RepoConfig) -> str:
    """The view's name in the store (with Feast's version suffix when versioning is on)."""
    return compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)


def feature_fields(name: str, features: list[str]) -> list[bytes]:
    """The hash fields of `features` of the view stored as `name`."""
    return [_mmh3(f"{name}:{feature}") for feature in features]


def timestamp_field(name: str) -> bytes:
    return f"_ts:{name}".encode()


def timestamp_bytes(event_ms: int) -> bytes:
    """The serialized `Timestamp` Feast stores for an event time in epoch milliseconds."""
    seconds, millis = divmod(event_ms, 1000)
    return Timestamp(seconds=seconds, nanos=millis * 1_000_000).SerializeToString()


def redis_key(project: str, join_key: str, entity: str, serialization_version: int) -> bytes:
    """Feast's hash key of a one-column string entity in `project` (Feast's own code)."""
    key = EntityKey(join_keys=[join_key], entity_values=[Value(string_val=entity)])
    return (serialize_entity_key(key, entity_key_serialization_version=serialization_version)
            + project.encode())


def redis_key_function(project: str, join_key: str, serialization_version: int
                       ) -> Callable[[str], bytes]:
    """`redis_key` for one project and join key, precomputed: version 3 (Feast's default) is
    `serialize_entity_key_prefix([join_key])`, then the value's type, length and UTF-8 bytes."""
    if serialization_version < 3:
        return lambda entity: redis_key(project, join_key, entity, serialization_version)
    prefix = serialize_entity_key_prefix([join_key], serialization_version)
    string_type = _UINT32.pack(ValueType.STRING.value)
    suffix = project.encode()

    def key(entity: str) -> bytes:
        data = entity.encode()
        return prefix + string_type + _UINT32.pack(len(data)) + data + suffix

    return key

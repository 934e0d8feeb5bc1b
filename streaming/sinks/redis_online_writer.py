"""The online sink's bulk writer into Redis, in Feast's own online format.

Feast's `write_to_online_store` reaches about 3–4k rows/s into Redis here (a pandas frame, then
one protobuf object per value, then two pipelines). This writer keeps Feast's layout
(`feast_redis_format`: same keys, fields and serialization, so `get_online_features` and
`feast serve` read what it writes) and sends each chunk of rows as one `EVALSHA` of a small Lua
script, many chunks per pipeline round trip.

Never older over newer, decided by Redis itself: for each row the script reads the stored
`_ts:<view>` timestamp and writes the row only when its event time is strictly later (seconds,
then nanos, as Feast compares), so concurrent sinks, a replay after kill -9 and a late duplicate
all leave the newest row in place, and a replay writes nothing it wrote before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import structlog
from feast.infra.online_stores.redis import RedisOnlineStore
from redis import Redis
from redis.exceptions import NoScriptError

from streaming.sinks import feast_redis_format as fmt
from streaming.sinks.feast_online_writer import OnlineWriter, Rejected
from streaming.sinks.online_rows import OnlineRow

log = structlog.get_logger(__name__)

CHUNK_ROWS = 500
"""Rows per EVALSHA (Redis runs a script atomically: small chunks keep readers waiting little)."""

Arg = bytes | int
"""One argument of the script."""

ENTITY_KEY_CACHE = 1_000_000
"""Serialized entity keys kept in memory (pairs and clients repeat; cleared when full)."""

# KEYS: the rows' hashes. ARGV: ts field, feature count F, key TTL (s, 0 = none), F feature
# fields, then per row: seconds, nanos, serialized Timestamp, F serialized Values.
WRITE_NEWER = """
local function varint(s, pos)
  local value, scale = 0, 1
  while true do
    local b = string.byte(s, pos)
    if b == nil then return value, pos end
    pos = pos + 1
    value = value + (b % 128) * scale
    if b < 128 then return value, pos end
    scale = scale * 128
  end
end
local function stamp(s)
  local seconds, nanos, pos = 0, 0, 1
  while pos <= #s do
    local tag = string.byte(s, pos)
    local value
    value, pos = varint(s, pos + 1)
    if tag == 8 then seconds = value elseif tag == 16 then nanos = value end
  end
  return seconds, nanos
end
local ts_field = ARGV[1]
local nf = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local stride = 3 + nf
local written = 0
for i, key in ipairs(KEYS) do
  local o = 3 + nf + (i - 1) * stride
  local seconds, nanos = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])
  local newer = true
  local old = redis.call('HGET', key, ts_field)
  if old and #old > 0 then
    local old_seconds, old_nanos = stamp(old)
    newer = seconds > old_seconds or (seconds == old_seconds and nanos > old_nanos)
  end
  if newer then
    local args = {ts_field, ARGV[o + 3]}
    for j = 1, nf do
      args[2 * j + 1] = ARGV[3 + j]
      args[2 * j + 2] = ARGV[o + 3 + j]
    end
    redis.call('HSET', key, unpack(args))
    if ttl > 0 then redis.call('EXPIRE', key, ttl) end
    written = written + 1
  end
end
return written
"""


@dataclass
class _ViewLayout:
    """A view's stored name, fields and encoders, resolved once."""

    ts_field: bytes
    features: list[str]
    fields: list[bytes]
    encoders: list[fmt.Encoder]


@dataclass
class RedisBulkWriter(OnlineWriter):
    """`OnlineWriter` whose writes are pipelined Lua `EVALSHA`s in Feast's Redis format."""

    chunk_rows: int = CHUNK_ROWS
    _layouts: dict[str, _ViewLayout] = field(default_factory=dict)
    _keys: dict[tuple[str, str], bytes] = field(default_factory=dict)
    _client: Redis | None = None
    _sha: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        config = self.store.config
        online = cast(RedisOnlineStore, self.store._get_provider().online_store)
        self._client = cast(Redis, online._get_client(config.online_store))  # Feast's own
        self._ttl = int(getattr(config.online_store, "key_ttl_seconds", None) or 0)
        for name, view in self.views.items():
            stored = fmt.view_name(view, config)
            features = [f.name for f in view.features]
            by_name = fmt.encoders(view)
            self._layouts[name] = _ViewLayout(
                fmt.timestamp_field(stored), features, fmt.feature_fields(stored, features),
                [by_name[f] for f in features])
        self._sha = str(self.client.script_load(WRITE_NEWER))

    @property
    def client(self) -> Redis:
        assert self._client is not None
        return self._client

    def _key(self, join_key: str, entity: str) -> bytes:
        key = self._keys.get((join_key, entity))
        if key is None:
            if len(self._keys) >= ENTITY_KEY_CACHE:
                self._keys.clear()
            config = self.store.config
            key = fmt.redis_key(config.project, join_key, entity,
                                config.entity_key_serialization_version)
            self._keys[(join_key, entity)] = key
        return key

    def _encode(self, layout: _ViewLayout, rows: list[OnlineRow]
                ) -> tuple[list[bytes], list[Arg], list[Rejected]]:
        keys: list[bytes] = []
        per_row: list[Arg] = []
        rejected: list[Rejected] = []
        pairs = list(zip(layout.features, layout.encoders, strict=True))
        for row in rows:
            values = row.values
            try:
                encoded = [encode(values.get(name)) for name, encode in pairs]
            except ValueError:
                rejected.append((row, self._reason(layout, row)))
                continue
            seconds, millis = divmod(row.event_ms, 1000)
            keys.append(self._key(row.entity_column, row.entity))
            per_row.extend((seconds, millis * 1_000_000, fmt.timestamp_bytes(row.event_ms)))
            per_row.extend(encoded)
        return keys, per_row, rejected

    @staticmethod
    def _reason(layout: _ViewLayout, row: OnlineRow) -> str:
        for name, encode in zip(layout.features, layout.encoders, strict=True):
            try:
                encode(row.values.get(name))
            except ValueError as error:
                return f"schema: {name} {error}"
        return "schema: a value does not fit its feature type"

    def write(self, view: str, rows: list[OnlineRow]) -> list[Rejected]:
        """Write every row newer than what Redis holds; returns the rows whose values do not
        fit the view's types (the rest is written)."""
        if not rows:
            return []
        layout = self._layouts[view]
        keys, per_row, rejected = self._encode(layout, rows)
        if keys:
            self.rows_written += self._send(layout, keys, per_row)
        return rejected

    def _send(self, layout: _ViewLayout, keys: list[bytes], per_row: list[Arg]) -> int:
        head: list[Arg] = [layout.ts_field, len(layout.fields), self._ttl, *layout.fields]
        stride = 3 + len(layout.fields)
        try:
            return self._pipeline(head, stride, keys, per_row)
        except NoScriptError:  # Redis restarted and lost its script cache: load, resend
            log.info("redis lost the sink's script; loading it again")
            self._sha = str(self.client.script_load(WRITE_NEWER))
            return self._pipeline(head, stride, keys, per_row)

    def _pipeline(self, head: list[Arg], stride: int, keys: list[bytes],
                  per_row: list[Arg]) -> int:
        with self.client.pipeline(transaction=False) as pipe:
            for start in range(0, len(keys), self.chunk_rows):
                chunk = keys[start:start + self.chunk_rows]
                args = per_row[start * stride:(start + len(chunk)) * stride]
                pipe.evalsha(self._sha, len(chunk), *chunk, *head, *args)
            return sum(int(n) for n in pipe.execute())

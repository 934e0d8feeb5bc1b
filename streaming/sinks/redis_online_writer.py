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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import structlog
from feast.infra.online_stores.redis import RedisOnlineStore
from redis import Redis
from redis.exceptions import NoScriptError

from streaming.sinks import feast_redis_format as fmt
from streaming.sinks import value_blobs
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
# fields, then per row: its serialized Timestamp and its values blob (`value_blobs`: per feature
# a 2-byte big-endian length and the serialized Value).
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
local written = 0
for i, key in ipairs(KEYS) do
  local o = 3 + nf + (i - 1) * 2
  local ts = ARGV[o + 1]
  local newer = true
  local old = redis.call('HGET', key, ts_field)
  if old and #old > 0 then
    local seconds, nanos = stamp(ts)
    local old_seconds, old_nanos = stamp(old)
    newer = seconds > old_seconds or (seconds == old_seconds and nanos > old_nanos)
  end
  if newer then
    local blob = ARGV[o + 2]
    local args = {ts_field, ts}
    local pos = 1
    for j = 1, nf do
      local len = string.byte(blob, pos) * 256 + string.byte(blob, pos + 1)
      args[2 * j + 1] = ARGV[3 + j]
      args[2 * j + 2] = string.sub(blob, pos + 2, pos + 1 + len)
      pos = pos + 2 + len
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
    _key_functions: dict[str, Callable[[str], bytes]] = field(default_factory=dict)
    _keys: dict[tuple[str, str], bytes] = field(default_factory=dict)
    _stamps: dict[int, bytes] = field(default_factory=dict)
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
            build = self._key_functions.get(join_key)
            if build is None:
                config = self.store.config
                build = fmt.redis_key_function(config.project, join_key,
                                               config.entity_key_serialization_version)
                self._key_functions[join_key] = build
            if len(self._keys) >= ENTITY_KEY_CACHE:
                self._keys.clear()
            key = self._keys[(join_key, entity)] = build(entity)
        return key

    def _stamp(self, event_ms: int) -> bytes:
        stamp = self._stamps.get(event_ms)
        if stamp is None:
            if len(self._stamps) >= ENTITY_KEY_CACHE:
                self._stamps.clear()
            stamp = self._stamps[event_ms] = fmt.timestamp_bytes(event_ms)
        return stamp

    def _encode(self, layout: _ViewLayout, rows: list[OnlineRow]
                ) -> tuple[list[bytes], list[Arg], list[Rejected]]:
        reasons: list[str | None] = [None] * len(rows)
        columns = [value_blobs.encode_column(encode, [r.values.get(name) for r in rows],
                                             reasons, name)
                   for name, encode in zip(layout.features, layout.encoders, strict=True)]
        blobs = value_blobs.row_blobs(columns)
        keys: list[bytes] = []
        per_row: list[Arg] = []
        rejected: list[Rejected] = []
        for row, blob, reason in zip(rows, blobs, reasons, strict=True):
            if reason is not None:
                rejected.append((row, reason))
                continue
            keys.append(self._key(row.entity_column, row.entity))
            per_row.append(self._stamp(row.event_ms))
            per_row.append(blob)
        return keys, per_row, rejected

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
        try:
            return self._pipeline(head, keys, per_row)
        except NoScriptError:  # Redis restarted and lost its script cache: load, resend
            log.info("redis lost the sink's script; loading it again")
            self._sha = str(self.client.script_load(WRITE_NEWER))
            return self._pipeline(head, keys, per_row)

    def _pipeline(self, head: list[Arg], keys: list[bytes], per_row: list[Arg]) -> int:
        with self.client.pipeline(transaction=False) as pipe:
            for start in range(0, len(keys), self.chunk_rows):
                chunk = keys[start:start + self.chunk_rows]
                args = per_row[2 * start:2 * (start + len(chunk))]
                pipe.evalsha(self._sha, len(chunk), *chunk, *head, *args)
            return sum(int(n) for n in pipe.execute())

"""The online sink's bulk writer into Redis, in Feast's own online format.

Feast's `write_to_online_store` reaches about 3–4k rows/s into Redis here (a pandas frame, then
one protobuf object per value, then two pipelines). This writer keeps Feast's layout
(`feast_redis_format`: same keys, fields and serialization, so `get_online_features` and
`feast serve` read what it writes) and sends each chunk of rows as one `EVALSHA` of a small Lua
script as soon as it is encoded, so Redis runs a chunk while the next is encoded; the replies are
read at the end of the write.

Never older over newer, decided by Redis itself: for each row the script reads the stored
`_ts:<view>` timestamp and writes the row only when its event time is later (seconds, then
nanos, as Feast compares), or, for a row with a log position (`OnlineRow.position`: processor
outputs), when its event time is the same and its position later than the stored
`_pos:<view>` (a field beside Feast's, which Feast's readers ignore; absent: the stored row has
none, so a positioned row at its event time replaces it). So a correction of the latest row
(same event time, new values, later in its topic-partition) reaches the store, while concurrent
sinks, a replay after kill -9 and a late duplicate all leave the newest row in place, and a
replay writes nothing it wrote before, not even for a moment. A row without a position (raw
readings) never replaces one at its event time, and clears the stored position when written.
Positions are compared as zero-padded decimal strings (exact beyond Lua's 2^53); they order
the rows of one topic-partition only, which is what feeds one (view, entity).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import structlog
from feast.infra.online_stores.redis import RedisOnlineStore
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streaming.sinks import feast_redis_format as fmt
from streaming.sinks import value_blobs
from streaming.sinks.feast_online_writer import OnlineWriter, Rejected
from streaming.sinks.online_rows import OnlineRow

log = structlog.get_logger(__name__)

CHUNK_ROWS = 1_000
"""Rows per EVALSHA (Redis runs a script atomically: small chunks keep readers waiting little,
~20 ms here), encoded while Redis runs the one before."""

Arg = bytes | int
"""One argument of the script."""

ENTITY_KEY_CACHE = 1_000_000
"""Serialized entity keys kept in memory (pairs and clients repeat; cleared when full)."""

POSITION_DIGITS = 20  # a Kafka offset (int64) as a fixed-width decimal string

# KEYS: the rows' hashes. ARGV: ts field, position field, feature count F, key TTL (s, 0 =
# none), F feature fields, then per row: its serialized Timestamp, its position (POSITION_DIGITS
# digits, or empty: none) and its values blob (`value_blobs`: per feature a 2-byte big-endian
# length and the serialized Value).
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
local position_field = ARGV[2]
local nf = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local written = 0
for i, key in ipairs(KEYS) do
  local o = 4 + nf + (i - 1) * 3
  local ts = ARGV[o + 1]
  local position = ARGV[o + 2]
  local newer = true
  local stored = redis.call('HMGET', key, ts_field, position_field)
  local old = stored[1]
  if old and #old > 0 then
    local seconds, nanos = stamp(ts)
    local old_seconds, old_nanos = stamp(old)
    if seconds == old_seconds and nanos == old_nanos then
      local old_position = stored[2]
      newer = #position > 0 and (not old_position or position > old_position)
    else
      newer = seconds > old_seconds or (seconds == old_seconds and nanos > old_nanos)
    end
  end
  if newer then
    local blob = ARGV[o + 3]
    local args = {ts_field, ts}
    local at = 1
    for j = 1, nf do
      local len = string.byte(blob, at) * 256 + string.byte(blob, at + 1)
      args[2 * j + 1] = ARGV[4 + j]
      args[2 * j + 2] = string.sub(blob, at + 2, at + 1 + len)
      at = at + 2 + len
    end
    if #position > 0 then
      args[2 * nf + 3] = position_field
      args[2 * nf + 4] = position
    elseif stored[2] then
      redis.call('HDEL', key, position_field)
    end
    redis.call('HSET', key, unpack(args))
    if ttl > 0 then redis.call('EXPIRE', key, ttl) end
    written = written + 1
  end
end
return written
"""


def position_field(stored_view: str) -> bytes:
    """The hash field holding the log position of the row stored for a view (see the module
    docstring; Feast reads only its own fields)."""
    return f"_pos:{stored_view}".encode()


def position_bytes(position: int) -> bytes:
    """A row's position as the script compares it (empty: none)."""
    return b"" if position < 0 else str(position).zfill(POSITION_DIGITS).encode()


@dataclass
class _ViewLayout:
    """A view's stored name, fields and encoders, resolved once."""

    ts_field: bytes
    position_field: bytes
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
                fmt.timestamp_field(stored), position_field(stored), features,
                fmt.feature_fields(stored, features), [by_name[f] for f in features])
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
            per_row.append(position_bytes(row.position))
            per_row.append(blob)
        return keys, per_row, rejected

    def write(self, view: str, rows: list[OnlineRow]) -> list[Rejected]:
        """Write every row newer than what Redis holds; returns the rows whose values do not
        fit the view's types (the rest is written)."""
        if not rows:
            return []
        try:
            return self._stream(self._layouts[view], rows)
        except NoScriptError:  # Redis restarted and lost its script cache: load, write again
            log.info("redis lost the sink's script; loading it again")
            self._sha = str(self.client.script_load(WRITE_NEWER))
            return self._stream(self._layouts[view], rows)

    def _stream(self, layout: _ViewLayout, rows: list[OnlineRow]) -> list[Rejected]:
        """Encode a chunk, send its EVALSHA, encode the next while Redis runs it; then read
        every reply (one pipeline whose sending overlaps the encoding)."""
        head: list[Arg] = [layout.ts_field, layout.position_field, len(layout.fields),
                           self._ttl, *layout.fields]
        rejected: list[Rejected] = []
        pool = self.client.connection_pool
        connection = pool.get_connection()
        try:
            sent = 0
            for start in range(0, len(rows), self.chunk_rows):
                keys, per_row, refused = self._encode(layout, rows[start:start + self.chunk_rows])
                rejected.extend(refused)
                if keys:
                    command = ("EVALSHA", self._sha, len(keys), *keys, *head, *per_row)
                    connection.send_packed_command(connection.pack_commands([command]))
                    sent += 1
            written, error = 0, None
            for _ in range(sent):  # every reply is read, so the connection stays in step
                try:
                    written += int(connection.read_response())
                except ResponseError as failure:
                    error = error or failure
            if error is not None:
                raise error
        except (RedisConnectionError, RedisTimeoutError, OSError):
            connection.disconnect()
            raise
        finally:
            pool.release(connection)
        self.rows_written += written
        return rejected

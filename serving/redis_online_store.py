"""Feast's Redis online store, with one clear error when the profile's Redis is not set.

The `redis` and `gcp` profiles (`feature_repo/feature_store.{redis,gcp}.yaml`) read the server
from `${BRAID_FEAST_REDIS}`. Feast expands the variables of its YAML with `os.path.expandvars`,
which leaves an unset one as the literal text `${BRAID_FEAST_REDIS}`, and Feast's Redis store
then fails at its first connection with `KeyError: 'port'`. This type is Feast's
`RedisOnlineStore` unchanged, except that its configuration refuses such a value when the YAML
is read, naming the variable and the line that points it at the local stack's Redis.

Select it in a `feature_store.yaml` with
`online_store: {type: serving.redis_online_store.BraidRedisOnlineStore, connection_string: ...}`.
"""

from __future__ import annotations

from typing import Literal

from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from pydantic import StrictStr, field_validator

VARIABLE = "BRAID_FEAST_REDIS"
STACK_HINT = (f"{VARIABLE}=127.0.0.1:16379 (host:port[,db=N,password=...]; the Redis of "
              "`braid up`, which prints the line)")


class BraidRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """`RedisOnlineStoreConfig` whose connection string must be set."""

    type: Literal["serving.redis_online_store.BraidRedisOnlineStore"] = (
        "serving.redis_online_store.BraidRedisOnlineStore")  # type: ignore[assignment]
    connection_string: StrictStr

    @field_validator("connection_string")
    @classmethod
    def _set(cls, value: str) -> str:
        text = value.strip()
        if not text or text.startswith("$"):
            raise ValueError(f"{VARIABLE} is not set: the profile's Redis online store needs "
                             f"it, e.g. {STACK_HINT}")
        host_port = text.split(",", 1)[0]
        if ":" not in host_port or not host_port.rsplit(":", 1)[1].isdigit():
            raise ValueError(f"{VARIABLE}={value!r} is not host:port[,db=N,password=...], "
                             f"e.g. {STACK_HINT}")
        return value


class BraidRedisOnlineStore(RedisOnlineStore):
    """Feast's Redis online store (reads and writes unchanged); see the module docstring."""

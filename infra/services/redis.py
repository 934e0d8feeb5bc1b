"""Redis, the online store of the `redis` Feast profile: Debian's `redis-server`.

Bound to 127.0.0.1 on `redis_port` (0: a free port chosen by `braid up` and recorded with the
stack), data under `<state>/data/redis` with an append-only file, so online features survive a
restart of the server. Clients use `StackSettings.redis_url`.
"""

from __future__ import annotations

import shutil
from functools import partial

from infra.health import redis_ping
from infra.processes import MissingBinaryError
from infra.services.base import ServiceSpec
from infra.settings import StackSettings

NAME = "redis"


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise MissingBinaryError(
            "redis: `redis-server` not found: sudo apt-get install redis-server "
            "(scripts/setup.sh does it when run as root)"
        )
    return found


def spec(settings: StackSettings) -> ServiceSpec:
    """`redis-server` in the foreground on `redis_port`, appendonly, no RDB snapshots."""
    data = (settings.data_dir / "redis").resolve()
    argv = [
        redis_binary(),
        "--bind", settings.host, "--port", str(settings.redis_port),
        "--dir", str(data), "--appendonly", "yes", "--appendfsync", "everysec",
        "--save", "", "--daemonize", "no", "--protected-mode", "yes",
        # keep argv as started: the PID file matches a process by its command line
        "--set-proc-title", "no",
    ]
    return ServiceSpec(
        name=NAME,
        argv=argv,
        host=settings.host,
        port=settings.redis_port,
        health=partial(redis_ping, settings.host, settings.redis_port),
        prepare=partial(data.mkdir, parents=True, exist_ok=True),
    )

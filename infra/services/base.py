"""What the stack needs to know to run one service."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infra.processes import HealthCheck, MissingBinaryError


@dataclass(frozen=True)
class ServiceSpec:
    """A service's process: its command, where it listens, how to tell it is up, what it needs
    first. A service may run as several processes (the Kafka cluster's nodes): each has a spec
    of its own, with its own `name` (PID file, log), and `service` names the service."""

    name: str
    argv: list[str]
    host: str
    port: int
    health: HealthCheck
    env: Mapping[str, str] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    #: Run before each start (write config, format storage, fetch jars); must be idempotent.
    prepare: Callable[[], None] | None = None
    #: Run once the service is healthy (create a bucket ...); must be idempotent.
    after_start: Callable[[], None] | None = None
    #: Further ports it listens on (e.g. Kafka's controller), checked free before a start.
    extra_ports: tuple[int, ...] = ()
    #: The service this process belongs to (what `requires` and `--services` name); default
    #: `name`.
    service: str = ""

    @property
    def service_name(self) -> str:
        return self.service or self.name


def venv_executable(name: str, hint: str) -> str:
    """An executable installed beside this Python (the venv's bin/) or on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise MissingBinaryError(f"`{name}` not found beside {sys.executable} nor on PATH: {hint}")

"""Helpers for tests that run the stack's services (used by tests/conftest.py's fixtures).

No pytest here, so any test or script can import them.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from infra import stack
from infra.settings import StackSettings
from streaming.settings import KafkaSettings


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_settings(state_dir: object, **overrides: object) -> StackSettings:
    """Settings of a stack running only an Apache Kafka broker, on free ports under `state_dir`."""
    return StackSettings.model_validate({
        "state_dir": state_dir,
        "broker_port": free_port(),
        "controller_port": free_port(),
        "services": ["broker"],
        **overrides,
    })


@dataclass
class BrokerStack:
    """An Apache Kafka broker of its own that tests may stop, kill and restart."""

    settings: StackSettings
    kafka_settings: KafkaSettings

    def restart_broker(self, *, hard: bool = False) -> None:
        """Stop the broker by PID (`hard`: kill -9) and start it again on the same log dir."""
        stack.restart_service(self.settings, "broker", hard=hard)


@dataclass(frozen=True)
class GcsEmulator:
    """The running GCS emulator: its endpoint URL and a bucket that exists."""

    endpoint: str
    bucket: str
    project: str


def unique_topic(prefix: str, name: str) -> str:
    """`name` under a test's prefix (see the `unique_topic_prefix` fixture)."""
    return f"{prefix}{name}"

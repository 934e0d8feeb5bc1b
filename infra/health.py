"""Health checks: small callables returning True when a service answers."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient


def tcp_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """True if `url` answers HTTP with a status below 500."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def kafka_metadata(bootstrap_servers: str, host: str, port: int, timeout_s: float = 2.0,
                   *, node_id: int | None = None) -> bool:
    """True if the broker answers a metadata request naming at least one broker, or naming
    `node_id` among the live brokers (registered with the controller and not fenced) when
    given; checked after a plain TCP connect."""
    if not tcp_open(host, port):
        return False
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})
    try:
        brokers = admin.list_topics(timeout=timeout_s).brokers
    except Exception:
        return False
    return node_id in brokers if node_id is not None else bool(brokers)


def redis_ping(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True if a Redis server on host:port answers PING with PONG."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def idempotent_producer_ready(bootstrap_servers: str, timeout_s: float = 60.0) -> bool:
    """True once an idempotent producer gets its producer id from the broker (within
    `timeout_s`). A broker that answers metadata may still be loading its transaction
    coordinator: until then every idempotent producer's first request is refused and
    librdkafka prints `GETPID ... Coordinator load in progress: retrying`. This probe waits that
    out silently (its own logs off), so the stack's first real producer never sees it."""
    state: dict[str, str] = {}

    def on_stats(text: str) -> None:
        state["idemp"] = str(json.loads(text).get("eos", {}).get("idemp_state", ""))

    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True,
                         "statistics.interval.ms": 100, "stats_cb": on_stats, "log_level": 0})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        producer.poll(0.1)
        if state.get("idemp") == "Assigned":
            return True
    return False

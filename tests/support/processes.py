"""Run `braid` commands as real child processes in tests (so they can be killed with -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from streaming.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[2]


class BraidProcess:
    """`python -m cli.main <args>` with the test broker's settings; output to a log file."""

    def __init__(self, args: list[str], kafka: KafkaSettings, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.args = args
        self.extra_env = env or {}
        self.kafka = kafka
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> BraidProcess:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
               "KAFKA_SESSION_TIMEOUT_MS": str(self.kafka.session_timeout_ms),
               "KAFKA_FETCH_WAIT_MAX_MS": str(self.kafka.fetch_wait_max_ms),
               "BRAID_LOG_JSON": "1", "PYTHONPATH": str(REPO), **self.extra_env}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", *self.args], cwd=REPO,
                                     env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.starts += 1
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout_s: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def wait_for_log(self, needle: str, count: int, timeout_s: float = 60) -> None:
        """Wait until the log holds `needle` at least `count` times (e.g. one "assigned" per
        start: this incarnation got its partitions)."""
        deadline = time.monotonic() + timeout_s
        while self.log_path.read_text().count(needle) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.args[:2]} never logged {needle} x{count}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

"""`braid demo` in a small configuration (2 pairs, 0.6 days of history, 70 s live; 60 sensor
clients), on a stack of its own: it ends with the consistency report at 100%, a champion in
MLflow for each pipeline, live predictions from each, and every printed indicator warmed up (the
stream carried on from the history).

Its whole output is read as a newcomer sees it: the demo runs on a pseudo-terminal (so rich's
spinners and the progress bars draw as they do for a user), and the text, escape sequences
removed, holds no warning, traceback, Java or librdkafka line; it shows progress for the slow
steps (the stack's start, the Spark backfill's tasks, Feast's materialization, both trainings'
steps), serves from Redis, and says in one sentence per model how it did against its
baselines."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import orjson
import pytest

from infra.testing import free_port
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings

# Spark, MLflow and a minute of live trades: about 4 minutes alone on 2 cores
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1_500)]

ROOT = Path(__file__).resolve().parents[2]


#: What a newcomer must not see: warnings (Python's, structlog's, Java's), tracebacks and
#: exceptions, Java's and log4j's lines, librdkafka's own log lines (`%4|<time>|<facility>|`).
NOISE = {
    "a warning": re.compile(r"(?i)\bwarn(ing)?s?\b|Warning:"),
    "a traceback": re.compile(r"Traceback \(most recent call last\)"),
    "an exception": re.compile(r"\b[A-Z]\w*(Error|Exception)\b"),
    "a Java log line": re.compile(r"\d\d/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARN|ERROR)\b|log4j"
                                  r"|incubator modules|SLF4J"),
    "a librdkafka log line": re.compile(r"%\d\|\d+\.\d+\|"),
}
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[=>]")


def run_on_a_terminal(args: list[str], env: dict[str, str], log: Path, timeout_s: float) -> int:
    """Run `args` with a pseudo-terminal as stdout and stderr, everything it writes copied to
    `log`; returns the exit code."""
    master, slave = pty.openpty()
    # a terminal's size, as a user's has (tqdm draws nothing on a 0-column terminal)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    with log.open("wb") as sink:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        deadline = time.monotonic() + timeout_s
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"the demo ran over {timeout_s:.0f} s")
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                sink.write(chunk)
        os.close(master)
        return proc.wait(60)


def processor_events(log_dir: Path) -> str:
    """The sensor processors' hand-overs, restarts and warnings (their logs are gone with the
    test's directory): what a failed run needs to be explained."""
    shown = re.compile(r"assigned|revoked|lost|stopped|warning|error|Traceback")
    lines = [f"{path.name}: {line}" for path in sorted(log_dir.glob("demo-sensor-*.log"))
             for line in path.read_text(errors="replace").splitlines() if shown.search(line)]
    return "\nsensor processors' events:\n" + "\n".join(lines[-60:])


def test_the_demo_ends_with_consistent_features_a_champion_and_live_predictions(
    tmp_path: Path,
) -> None:
    broker = free_port()
    env = {
        **os.environ,
        "BRAID_STACK_STATE_DIR": str(tmp_path / "var"),
        "BRAID_STACK_SERVICES": "broker,redis,mlflow",
        "BRAID_STACK_BROKER_PORT": str(broker),
        "BRAID_STACK_CONTROLLER_PORT": str(free_port()),
        "BRAID_STACK_MLFLOW_PORT": str(free_port()),
        "BRAID_STACK_REDIS_PORT": str(free_port()),
        "BRAID_STACK_HEALTH_TIMEOUT_S": "180",
        "BRAID_FEAST_OFFLINE_ROOT": str(tmp_path / "offline"),
        "COLUMNS": "160",
        "TERM": "xterm-256color",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    try:
        log = tmp_path / "demo.log"
        code = run_on_a_terminal(
            [sys.executable, "-m", "cli.main", "demo", "--days", "0.6", "--pairs", "2",
             "--live-seconds", "70", "--sensor-clients", "60", "--sensor-minutes", "25",
             "--sensor-train-clients", "40", "--sensor-train-minutes", "120"],
            env, log, timeout_s=1_400)
        out = ANSI.sub("", log.read_bytes().decode("utf-8", "replace")).replace("\r", "\n")
        assert code == 0, out[-4000:] + processor_events(tmp_path / "var" / "log")
        for what, pattern in NOISE.items():
            found = [line for line in out.splitlines() if pattern.search(line)]
            assert not found, f"the demo printed {what}: {found[:5]}"
        # progress of every slow step, as the user sees it
        for shown in ("starting the local stack", "starting Spark", "Spark tasks",
                      "training the markets model: fit", "training the sensors alert model: ",
                      "waiting for", "publishing"):
            assert shown in out, f"no progress shown: {shown!r}"
        # the real online store, and one honest sentence per model
        assert "online store: Redis (127.0.0.1:" in out
        assert "into Redis (127.0.0.1:" in out
        sentences = re.findall(r"On its test period \(\d[\d,]* rows\) (braid-[a-z-]+) v\d+ "
                               r"scores ROC AUC \d\.\d{3} / log loss \d\.\d{4} against", out)
        assert sorted(set(sentences)) == ["braid-markets-direction", "braid-sensors-alert"]
        assert "random walk" in out and "it is champion because" in out
        assert "Delta tables written, at versions: candles v0, indicators v0" in out
        assert "match rate online vs offline: 100.0000%" in out
        assert re.search(r"braid-markets-direction version \d+ -> champion", out), out[-4000:]

        prefix = re.search(r"topic prefix: (demo\.\d+\.)", out)
        assert prefix, out[-2000:]
        kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{broker}")
        predictions = [orjson.loads(v) for _, _, _, v in
                       read_topic(kafka, prefix.group(1) + "predictions.markets") if v]
        assert {p["pair"] for p in predictions} == {"XBT/USD", "ETH/USD"}
        assert all(0.0 <= p["prediction"] <= 1.0 for p in predictions)
        assert {p["model_name"] for p in predictions} == {"braid-markets-direction"}

        latest: dict[str, dict[str, object]] = {}
        for _, _, _, value in read_topic(kafka, prefix.group(1) + "technical_indicators"):
            row = orjson.loads(value) if value else None
            if row and row["window_ms"] == 60_000:
                latest[str(row["pair"])] = row
        assert set(latest) == {"XBT/USD", "ETH/USD"}
        for pair, row in latest.items():
            cold = [k for k in ("macd", "macd_signal", "adx_14", "rsi_14", "obv_50")
                    if row[k] is None]
            assert not cold, f"{pair}: {cold} not warmed up"

        # sensors: the join served the version the demo registered as champion
        champion = re.search(r"braid-sensors-alert version (\d+) -> champion", out)
        assert champion, out[-4000:]
        alerts = [orjson.loads(v) for _, _, _, v in
                  read_topic(kafka, prefix.group(1) + "predictions.sensors") if v]
        assert {a["client"] for a in alerts} <= {f"demo-{i:06d}" for i in range(60)}
        assert len({a["client"] for a in alerts}) > 30
        assert {a["model_version"] for a in alerts} == {f"braid-sensors-alert/{champion[1]}"}
        assert all(0.0 <= a["probability"] <= 1.0 for a in alerts)
        events = {(a["client"], a["timestamp_ms"], a["trigger"]) for a in alerts}
        assert {t for _, _, t in events} == {"SX", "SY", "SZ"}
        assert f"{len(events):,} predictions" in out
        # published unsorted (bursts, interleaved, some late), every served vector is its
        # training row
        served = re.search(r"every served vector equals its training row: ([\d,]+) events", out)
        assert served and int(served[1].replace(",", "")) == len(events), out[-4000:]
        disorder = re.search(r"([\d,]+) readings out of order in their client's topic", out)
        assert disorder and int(disorder[1].replace(",", "")) > 0, out[-4000:]
    finally:
        subprocess.run([sys.executable, "-m", "cli.main", "down"], cwd=ROOT, env=env,
                       capture_output=True, timeout=120)

"""`braid demo` in a small configuration (2 pairs, 0.6 days of history, 70 s live; 60 sensor
clients), on a stack of its own: it ends with the consistency report at 100%, a champion in
MLflow for each pipeline, live predictions from each, and every printed indicator warmed up (the
stream carried on from the history)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from infra.testing import free_port
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings

# Spark, MLflow and a minute of live trades: about 4 minutes alone on 2 cores
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1_500)]

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_ends_with_consistent_features_a_champion_and_live_predictions(
    tmp_path: Path,
) -> None:
    broker = free_port()
    env = {
        **os.environ,
        "BRAID_STACK_STATE_DIR": str(tmp_path / "var"),
        "BRAID_STACK_SERVICES": "broker,mlflow",
        "BRAID_STACK_BROKER_PORT": str(broker),
        "BRAID_STACK_CONTROLLER_PORT": str(free_port()),
        "BRAID_STACK_MLFLOW_PORT": str(free_port()),
        "BRAID_STACK_HEALTH_TIMEOUT_S": "180",
        "BRAID_FEAST_OFFLINE_ROOT": str(tmp_path / "offline"),
        "COLUMNS": "160",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    try:
        log = tmp_path / "demo.log"
        with log.open("w") as sink:
            done = subprocess.run(
                [sys.executable, "-m", "cli.main", "demo", "--days", "0.6", "--pairs", "2",
                 "--live-seconds", "70", "--sensor-clients", "60", "--sensor-minutes", "25",
                 "--sensor-train-clients", "40", "--sensor-train-minutes", "120"],
                cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, timeout=1_400)
        out = log.read_text()
        assert done.returncode == 0, out[-4000:]
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

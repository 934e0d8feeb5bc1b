"""The local stack through `braid up | status | down`, PID handling, and the broker surviving
kill -9."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from infra import jars, processes, stack
from infra.services.base import venv_executable
from infra.settings import StackSettings
from infra.testing import BrokerStack, GcsEmulator, broker_settings, free_port
from streaming.settings import KafkaSettings
from streaming.topics import catalogue

pytestmark = pytest.mark.integration

BRAID = str(Path(sys.executable).parent / "braid")


def braid(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the `braid` CLI as a user would."""
    return subprocess.run(
        [BRAID, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def _client_config(kafka: KafkaSettings) -> dict[str, str | int | float | bool]:
    return dict(kafka.client_config())


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_up_status_down_runs_healthy_services_and_creates_catalogue_topics(tmp_path: Path) -> None:
    env = {
        "BRAID_STACK_STATE_DIR": str(tmp_path / "var"),
        "BRAID_STACK_BROKER_PORT": str(free_port()),
        "BRAID_STACK_CONTROLLER_PORT": str(free_port()),
        "BRAID_STACK_GCS_PORT": str(free_port()),
        "BRAID_STACK_REDIS_PORT": str(free_port()),
        "BRAID_STACK_SERVICES": "broker,gcs,redis",
    }
    settings = StackSettings(
        state_dir=tmp_path / "var",
        broker_port=int(env["BRAID_STACK_BROKER_PORT"]),
        controller_port=int(env["BRAID_STACK_CONTROLLER_PORT"]),
        gcs_port=int(env["BRAID_STACK_GCS_PORT"]),
        redis_port=int(env["BRAID_STACK_REDIS_PORT"]),
    )
    try:
        first = braid(["up"], env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "started: broker, gcs, redis" in first.stdout
        assert f"KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers}" in first.stdout
        assert f"REDIS_URL={settings.redis_url}" in first.stdout

        status = braid(["status"], env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "MiB" in status.stdout  # the broker's RSS
        rows = {row.name: row for row in stack.status(settings)}
        assert set(rows) == {"broker", "gcs", "redis"}
        assert all(r.alive and r.healthy and r.pid for r in rows.values())
        broker = rows["broker"]
        assert broker.startup_s is not None and 0 < broker.startup_s < settings.health_timeout_s
        assert broker.rss_bytes is not None and broker.rss_bytes > 50 * 2**20  # a JVM
        pids = {name: r.pid for name, r in rows.items()}
        for name in rows:
            assert (settings.run_dir / f"{name}.pid").exists()
            assert (settings.log_dir / f"{name}.log").exists()

        admin = AdminClient(_client_config(settings.local_kafka_settings()))
        topics = admin.list_topics(timeout=10).topics
        specs = catalogue()
        for spec in specs:
            assert len(topics[spec.name].partitions) == spec.partitions, spec.name
        resources = [ConfigResource(ResourceType.TOPIC, s.name) for s in specs]
        described = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
        for spec in specs:
            reported = {k: v.value for k, v in described[spec.name].items()}
            for key, value in spec.configs().items():
                assert reported[key] == value, (spec.name, key)
        for keyed in ("candles", "technical_indicators", "braid_checkpoints"):
            assert {k: v.value for k, v in described[keyed].items()}["cleanup.policy"] == "compact"

        again = braid(["up"], env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "nothing (already up)" in again.stdout
        assert {r.name: r.pid for r in stack.status(settings)} == pids
    finally:
        down = braid(["down"], env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert all(_gone(pid) for pid in pids.values() if pid)
    assert not list(settings.run_dir.glob("*.pid"))
    after = braid(["status"], env)
    assert after.returncode == 1


def test_stale_pid_files_are_replaced_and_never_signal_the_recorded_pid(tmp_path: Path) -> None:
    settings = broker_settings(tmp_path / "var")
    settings.run_dir.mkdir(parents=True)
    me = psutil.Process()  # alive, but not a broker: a reused PID
    processes.PidRecord(me.pid, ["java", "kafka.Kafka"], me.create_time()).write(
        settings.run_dir / "broker.pid"
    )
    assert processes.running_process(settings.run_dir, "broker") is None
    assert not (settings.run_dir / "broker.pid").exists()

    dead = subprocess.Popen(["true"])
    dead.wait()
    processes.PidRecord(dead.pid, ["true"], time.time()).write(settings.run_dir / "broker.pid")
    try:
        assert stack.up(settings, create_topics=False) == ["broker"]
        record = processes.PidRecord.read(settings.run_dir / "broker.pid")
        assert record is not None and record.pid not in (me.pid, dead.pid)
    finally:
        stack.down(settings)
    assert me.is_running()


def test_stop_sigkills_a_group_that_ignores_sigterm(tmp_path: Path) -> None:
    run_dir, log_dir = tmp_path / "run", tmp_path / "log"
    proc = processes.start(
        "stubborn", ["sh", "-c", "trap '' TERM; sleep 300 & sleep 300"],
        run_dir=run_dir, log_dir=log_dir,
    )
    time.sleep(0.2)
    children = proc.children(recursive=True)
    assert children
    assert processes.stop(run_dir, "stubborn", timeout_s=0.5)
    assert _gone(proc.pid)
    for child in children:
        assert _gone(child.pid)
    assert not processes.stop(run_dir, "stubborn")


def test_health_timeout_and_early_exit_errors_carry_the_log_tail(tmp_path: Path) -> None:
    run_dir, log_dir = tmp_path / "run", tmp_path / "log"
    slow = processes.start(
        "slow", ["sh", "-c", "echo warming up; sleep 30"], run_dir=run_dir, log_dir=log_dir
    )
    try:
        with pytest.raises(processes.ServiceError, match=r"(?s)not healthy.*warming up"):
            processes.wait_healthy(
                "slow", lambda: False, proc=slow, logfile=log_dir / "slow.log", timeout_s=0.5
            )
    finally:
        processes.stop(run_dir, "slow")
    with pytest.raises(processes.ServiceError, match=r"(?s)dies exited.*bad flag"):
        dies = processes.start(
            "dies", ["sh", "-c", "echo bad flag --nope; exit 3"], run_dir=run_dir, log_dir=log_dir
        )
        processes.wait_healthy(
            "dies", lambda: False, proc=dies, logfile=log_dir / "dies.log", timeout_s=10
        )


def test_broker_keeps_every_acknowledged_message_and_config_across_kill_9(
    broker_stack: BrokerStack, unique_topic_prefix: str
) -> None:
    conf = _client_config(broker_stack.kafka_settings)
    topic = f"{unique_topic_prefix}crash"
    admin = AdminClient(conf)
    configs = {"cleanup.policy": "compact", "retention.ms": "-1"}
    admin.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1, config=configs)]
    )[topic].result()

    producer = Producer({**conf, "enable.idempotence": True, "linger.ms": 5})
    for i in range(1000):
        producer.produce(topic, key=f"k{i}", value=str(i).encode())
    assert producer.flush(30) == 0

    broker_pid = _pid(broker_stack.settings, "broker")
    broker_stack.restart_broker(hard=True)
    assert _gone(broker_pid)
    assert _pid(broker_stack.settings, "broker") != broker_pid

    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 3
    resource = ConfigResource(ResourceType.TOPIC, topic)
    reported = admin.describe_configs([resource])[resource].result()
    assert {k: reported[k].value for k in configs} == configs

    consumer = Consumer({**conf, "group.id": f"{topic}-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    seen: list[int] = []
    deadline = time.monotonic() + 60
    try:
        while len(seen) < 1000 and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error() is None:
                    seen.append(int(msg.value() or b"-1"))
    finally:
        consumer.close()
    assert sorted(seen) == list(range(1000))


def test_missing_java_or_maven_fail_with_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    settings = broker_settings(tmp_path / "var")
    with pytest.raises(processes.MissingBinaryError, match=r"Java 17.*apt-get install"):
        stack.up(settings)
    monkeypatch.setenv("BRAID_JARS_DIR", str(tmp_path / "jars"))
    with pytest.raises(processes.MissingBinaryError, match=r"Maven.*apt-get install maven"):
        jars.ensure("kafka")
    with pytest.raises(processes.MissingBinaryError, match=r"no-such-emulator.*pip install x"):
        venv_executable("no-such-emulator", "pip install x")
    assert not list(tmp_path.glob("var/run/*.pid"))


def _pid(settings: StackSettings, name: str) -> int:
    proc = processes.running_process(settings.run_dir, name)
    assert proc is not None, f"{name} is not running"
    return proc.pid


def test_gcs_emulator_serves_its_bucket_to_gcsfs(gcs_emulator: GcsEmulator) -> None:
    import gcsfs

    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs_emulator.endpoint
    fs = gcsfs.GCSFileSystem(token="anon", project=gcs_emulator.project)
    path = f"{gcs_emulator.bucket}/{uuid.uuid4().hex}/hello.txt"
    with fs.open(path, "wb") as f:
        f.write(b"braid")
    assert fs.cat(path) == b"braid"

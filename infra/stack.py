"""The local stack: start services in dependency order, check them, stop them by PID.

`up` records what it started in `<state_dir>/run/stack.json`, so `status` and `down` act on the
same services and ports whatever the current settings say.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from infra import processes
from infra.services import SPECS, ServiceSpec, process_names
from infra.settings import StackSettings
from streaming.topics import ensure_topics

log = structlog.get_logger(__name__)

STATE_FILE = "stack.json"


@dataclass(frozen=True)
class ServiceStatus:
    """One service as `braid status` shows it."""

    name: str
    pid: int | None
    alive: bool
    healthy: bool
    port: int
    log: Path
    uptime_s: float | None
    #: Resident memory of the process and its children, bytes.
    rss_bytes: int | None = None
    #: Seconds from its start to its first passed health check (last start by this stack).
    startup_s: float | None = None


def _state_path(settings: StackSettings) -> Path:
    return settings.run_dir / STATE_FILE


def _save_state(settings: StackSettings) -> None:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    _state_path(settings).write_text(settings.model_dump_json(indent=2))


def recorded_settings(settings: StackSettings) -> StackSettings:
    """The settings of the stack `up` started in this state dir (or `settings` if none).

    The record lives until `down`, so `status` and `down` see the ports and services in use.
    """
    path = _state_path(settings)
    if not path.exists():
        return settings
    data = json.loads(path.read_text())
    data["state_dir"] = settings.state_dir
    return StackSettings.model_validate(data)


def _services(settings: StackSettings) -> list[list[ServiceSpec]]:
    """The enabled services' process specs, each service after the services it requires."""
    enabled = settings.enabled_services()
    specs = {name: SPECS[name](settings) for name in enabled}
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise processes.ServiceError(f"dependency cycle: {' -> '.join((*path, name))}")
        if name in ordered:
            return
        if name not in specs:
            raise processes.ServiceError(f"{path[-1]} requires {name}, which is not enabled")
        for dep in {dep for spec in specs[name] for dep in spec.requires}:
            visit(dep, (*path, name))
        ordered.append(name)

    for name in enabled:
        visit(name, ())
    return [specs[name] for name in ordered]


def _specs(settings: StackSettings) -> list[ServiceSpec]:
    """Every process of the enabled services, in start order."""
    return [spec for service in _services(settings) for spec in service]


def _same_command(cmdline: list[str], argv: list[str]) -> bool:
    """True if a process's command line runs `argv` (a script may appear after its interpreter)."""
    head = len(cmdline) - len(argv) + 1
    if head < 1 or cmdline[head:] != argv[1:]:
        return False
    return any(Path(part).name == Path(argv[0]).name for part in cmdline[:head])


def _check_compatible(spec: ServiceSpec, settings: StackSettings) -> None:
    """Refuse to adopt a running service whose command line differs from what `spec` says."""
    proc = processes.running_process(settings.run_dir, spec.name)
    if proc is not None and not _same_command(proc.cmdline(), spec.argv):
        raise processes.ServiceError(
            f"{spec.name} (pid {proc.pid}) runs with other settings ({' '.join(proc.cmdline())}); "
            "run `braid down` first"
        )


def _ensure_service(specs: list[ServiceSpec], settings: StackSettings) -> list[str]:
    """Start the processes of one service that do not run, then wait until each is healthy;
    returns the names started. All start before any is waited for: the nodes of a Kafka
    cluster elect a controller only once a majority of them runs."""
    procs = {spec.name: processes.running_process(settings.run_dir, spec.name)
             for spec in specs}
    to_start = [spec for spec in specs if procs[spec.name] is None]
    for spec in to_start:
        for port in (spec.port, *spec.extra_ports):
            if processes.tcp_port_taken(spec.host, port):
                raise processes.ServiceError(
                    f"{spec.name}: port {spec.host}:{port} is taken by a process this stack "
                    "did not start; stop it or choose other ports (BRAID_STACK_*_PORT)"
                )
    # each node of a cluster formats its storage with a JVM of its own (seconds each): at once
    with ThreadPoolExecutor(max_workers=max(1, len(to_start))) as pool:
        for done in [pool.submit(spec.prepare) for spec in to_start if spec.prepare]:
            done.result()
    began: dict[str, float] = {}
    for spec in to_start:
        began[spec.name] = time.monotonic()
        procs[spec.name] = processes.start(
            spec.name, spec.argv, run_dir=settings.run_dir, log_dir=settings.log_dir,
            env=spec.env, cwd=settings.data_dir, die_with_parent=settings.die_with_parent,
        )
    for spec in specs:
        processes.wait_healthy(
            spec.name, spec.health, proc=procs[spec.name],
            logfile=processes.log_path(settings.log_dir, spec.name),
            timeout_s=settings.health_timeout_s,
        )
        if spec.name in began:
            _startup_path(settings, spec.name).write_text(
                f"{time.monotonic() - began[spec.name]:.3f}\n")
        if spec.after_start is not None:
            spec.after_start()
    return [spec.name for spec in specs if spec.name in began]


def _startup_path(settings: StackSettings, name: str) -> Path:
    return settings.run_dir / f"{name}.startup"


def _startup_s(settings: StackSettings, name: str) -> float | None:
    try:
        return float(_startup_path(settings, name).read_text())
    except (OSError, ValueError):
        return None


def up(settings: StackSettings, *, create_topics: bool = True) -> list[str]:
    """Start what is not running, check all, create the catalogue's topics; returns started names.

    Idempotent: with everything healthy a second call starts nothing.
    """
    for directory in (settings.log_dir, settings.run_dir, settings.data_dir):
        directory.mkdir(parents=True, exist_ok=True)
    services = _services(settings)
    for spec in (spec for service in services for spec in service):
        _check_compatible(spec, settings)
    _save_state(settings)
    started = [name for service in services for name in _ensure_service(service, settings)]
    if create_topics and "broker" in settings.enabled_services():
        # no replication factor given: each topic gets the brokers' default, min(3, nodes)
        created = ensure_topics(settings.local_kafka_settings())
        log.info("topics ready", created=len(created))
    log.info("stack up", services=[s.name for service in services for s in service],
             started=started)
    return started


def _known_names(settings: StackSettings) -> list[list[str]]:
    """Processes recorded for this state dir, by service in start order, then any other PID
    files (each alone)."""
    recorded = recorded_settings(settings)
    groups = [process_names(service, recorded) for service in recorded.enabled_services()]
    known = {name for group in groups for name in group}
    if settings.run_dir.is_dir():
        groups += [[p.stem] for p in sorted(settings.run_dir.glob("*.pid"))
                   if p.stem not in known]
    return groups


def down(settings: StackSettings) -> list[str]:
    """Stop every recorded service in reverse start order, by PID; returns stopped names.

    The processes of one service (a cluster's nodes) stop together: one by one, the last node
    of a KRaft quorum would wait for a controller majority that is gone until it is killed."""
    stopped: list[str] = []
    for group in reversed(_known_names(settings)):
        with ThreadPoolExecutor(max_workers=len(group)) as pool:
            results = list(pool.map(
                lambda name: processes.stop(settings.run_dir, name,
                                            timeout_s=settings.stop_timeout_s), group))
        stopped += [name for name, was_running in zip(group, results, strict=True)
                    if was_running]
    _state_path(settings).unlink(missing_ok=True)
    log.info("stack down", stopped=stopped)
    return stopped


def status(settings: StackSettings) -> list[ServiceStatus]:
    """Per process (each Kafka node is one): PID, alive, healthy, port, log path, uptime."""
    recorded = recorded_settings(settings)
    result: list[ServiceStatus] = []
    for spec in _specs(recorded):
        proc = processes.running_process(recorded.run_dir, spec.name)
        result.append(ServiceStatus(
            name=spec.name,
            pid=proc.pid if proc else None,
            alive=proc is not None,
            healthy=proc is not None and spec.health(),
            port=spec.port,
            log=processes.log_path(recorded.log_dir, spec.name),
            uptime_s=processes.uptime_s(proc) if proc else None,
            rss_bytes=processes.rss_bytes(proc) if proc else None,
            startup_s=_startup_s(recorded, spec.name) if proc else None,
        ))
    return result


def restart_service(settings: StackSettings, name: str, *, hard: bool = False) -> None:
    """Stop one process by PID (a service's, or one Kafka node: `broker-2`) and start it again
    with the recorded settings (tests use it).

    `hard`: SIGKILL instead of a graceful stop (a crash: no flush, no controlled shutdown).
    """
    stop_service(settings, name, hard=hard)
    start_service(settings, name)
    log.info("service restarted", service=name, hard=hard)


def _process_spec(settings: StackSettings, name: str) -> ServiceSpec:
    spec = next((s for s in _specs(settings) if s.name == name), None)
    if spec is None:
        names = ", ".join(s.name for s in _specs(settings))
        raise processes.ServiceError(
            f"{name} is not part of the stack in {settings.state_dir} (it runs {names})")
    return spec


def stop_service(settings: StackSettings, name: str, *, hard: bool = False) -> bool:
    """Stop one process by its recorded PID; `hard`: SIGKILL at once (a crash). True if one ran."""
    recorded = recorded_settings(settings)
    _process_spec(recorded, name)
    if hard:
        return processes.kill(recorded.run_dir, name)
    return processes.stop(recorded.run_dir, name, timeout_s=recorded.stop_timeout_s)


def start_service(settings: StackSettings, name: str) -> None:
    """Start one process of the recorded stack again (unless it runs), wait until healthy."""
    recorded = recorded_settings(settings)
    _ensure_service([_process_spec(recorded, name)], recorded)

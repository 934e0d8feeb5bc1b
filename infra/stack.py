"""The local stack: start services in dependency order, check them, stop them by PID.

`up` records what it started in `<state_dir>/run/stack.json`, so `status` and `down` act on the
same services and ports whatever the current settings say.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from infra import processes
from infra.services import SPECS, ServiceSpec
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


def _specs(settings: StackSettings) -> list[ServiceSpec]:
    """Specs of the enabled services, each after the services it requires."""
    enabled = settings.enabled_services()
    specs = {name: SPECS[name](settings) for name in enabled}
    ordered: list[ServiceSpec] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise processes.ServiceError(f"dependency cycle: {' -> '.join((*path, name))}")
        if any(s.name == name for s in ordered):
            return
        if name not in specs:
            raise processes.ServiceError(f"{path[-1]} requires {name}, which is not enabled")
        for dep in specs[name].requires:
            visit(dep, (*path, name))
        ordered.append(specs[name])

    for name in enabled:
        visit(name, ())
    return ordered


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


def _ensure_service(spec: ServiceSpec, settings: StackSettings) -> bool:
    """Start `spec` unless it already runs; wait until healthy. True if it was started."""
    proc = processes.running_process(settings.run_dir, spec.name)
    logfile = processes.log_path(settings.log_dir, spec.name)
    started = proc is None
    began = time.monotonic()
    if proc is None:
        for port in (spec.port, *spec.extra_ports):
            if processes.tcp_port_taken(spec.host, port):
                raise processes.ServiceError(
                    f"{spec.name}: port {spec.host}:{port} is taken by a process this stack did "
                    f"not start; stop it or choose other ports (BRAID_STACK_*_PORT)"
                )
        if spec.prepare is not None:
            spec.prepare()
        began = time.monotonic()
        proc = processes.start(
            spec.name, spec.argv, run_dir=settings.run_dir, log_dir=settings.log_dir,
            env=spec.env, cwd=settings.data_dir, die_with_parent=settings.die_with_parent,
        )
    processes.wait_healthy(
        spec.name, spec.health, proc=proc, logfile=logfile, timeout_s=settings.health_timeout_s
    )
    if started:
        _startup_path(settings, spec.name).write_text(f"{time.monotonic() - began:.3f}\n")
    if spec.after_start is not None:
        spec.after_start()
    return started


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
    specs = _specs(settings)
    for spec in specs:
        _check_compatible(spec, settings)
    _save_state(settings)
    started = [spec.name for spec in specs if _ensure_service(spec, settings)]
    if create_topics and "broker" in settings.enabled_services():
        created = ensure_topics(settings.local_kafka_settings())
        log.info("topics ready", created=len(created))
    log.info("stack up", services=[s.name for s in specs], started=started)
    return started


def _known_names(settings: StackSettings) -> list[str]:
    """Services recorded for this state dir in start order, then any other PID files."""
    names = recorded_settings(settings).enabled_services()
    if settings.run_dir.is_dir():
        extra = sorted(p.stem for p in settings.run_dir.glob("*.pid") if p.stem not in names)
        names += extra
    return names


def down(settings: StackSettings) -> list[str]:
    """Stop every recorded service in reverse start order, by PID; returns stopped names."""
    stopped = [
        name for name in reversed(_known_names(settings))
        if processes.stop(settings.run_dir, name, timeout_s=settings.stop_timeout_s)
    ]
    _state_path(settings).unlink(missing_ok=True)
    log.info("stack down", stopped=stopped)
    return stopped


def status(settings: StackSettings) -> list[ServiceStatus]:
    """Per service: PID, alive, healthy, port, log path, uptime."""
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
    """Stop one service by PID and start it again with the recorded settings (tests use it).

    `hard`: SIGKILL instead of a graceful stop (a crash: no flush, no controlled shutdown).
    """
    recorded = recorded_settings(settings)
    spec = next((s for s in _specs(recorded) if s.name == name), None)
    if spec is None:
        raise processes.ServiceError(f"{name} is not part of the stack in {settings.state_dir}")
    if hard:
        processes.kill(recorded.run_dir, name)
    else:
        processes.stop(recorded.run_dir, name, timeout_s=recorded.stop_timeout_s)
    _ensure_service(spec, recorded)
    log.info("service restarted", service=name, hard=hard)

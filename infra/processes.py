"""Run a service as a detached process tracked by a PID file; stop it by that PID only.

A PID file is JSON: the PID, the command line and the process's creation time. A process is
"ours" only if all three still match, so a reused PID is never signalled. Nothing here looks
processes up by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog

log = structlog.get_logger(__name__)

HealthCheck = Callable[[], bool]

#: Creation times read back through psutil may differ from the recorded one by rounding (and
#: by wall-clock adjustments, which is why Linux compares boot-relative start ticks instead).
_CREATE_TIME_SLACK_S = 1.0


class ServiceError(RuntimeError):
    """A service could not be started, became unhealthy or could not be stopped."""


class MissingBinaryError(ServiceError):
    """The executable a service needs is not installed."""


@dataclass(frozen=True)
class PidRecord:
    """What a PID file holds."""

    pid: int
    cmdline: list[str]
    create_time: float
    #: Start time in clock ticks since boot (Linux), immune to wall-clock changes; else "".
    start_ticks: str = ""

    @classmethod
    def read(cls, path: Path) -> PidRecord | None:
        """The record in `path`, or None if it is missing or unreadable."""
        try:
            data = json.loads(path.read_text())
            return cls(
                int(data["pid"]),
                list(data["cmdline"]),
                float(data["create_time"]),
                str(data.get("start_ticks", "")),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable pid file", path=str(path))
            return None

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(
            {
                "pid": self.pid,
                "cmdline": self.cmdline,
                "create_time": self.create_time,
                "start_ticks": self.start_ticks,
            }
        ))
        tmp.replace(path)

    def matches(self, proc: psutil.Process) -> bool:
        """True if `proc` is the process this record describes (not a reused PID)."""
        if proc.cmdline() != self.cmdline:
            return False
        ticks = start_ticks(proc.pid)
        if ticks and self.start_ticks:
            return ticks == self.start_ticks
        return abs(proc.create_time() - self.create_time) <= _CREATE_TIME_SLACK_S


def start_ticks(pid: int) -> str:
    """Field 22 of /proc/<pid>/stat (start time in ticks since boot), or "" where absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def pid_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def log_path(log_dir: Path, name: str) -> Path:
    return log_dir / f"{name}.log"


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _is_alive(proc: psutil.Process) -> bool:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(proc.pid)
            return False
        return proc.is_running()
    except psutil.NoSuchProcess:
        return False


def running_process(run_dir: Path, name: str) -> psutil.Process | None:
    """The live process recorded for `name`, or None; a stale PID file is removed.

    Stale means the process is gone, or the PID now belongs to another command line or to a
    process created at another time (PID reuse).
    """
    path = pid_path(run_dir, name)
    record = PidRecord.read(path)
    if record is None:
        return None
    try:
        proc = psutil.Process(record.pid)
        same = record.matches(proc)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        proc, same = None, False
    if proc is None or not same or not _is_alive(proc):
        log.info("removing stale pid file", service=name, pid=record.pid, path=str(path))
        path.unlink(missing_ok=True)
        return None
    return proc


def start(
    name: str,
    argv: Sequence[str],
    *,
    run_dir: Path,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> psutil.Process:
    """Start `argv` in its own session, output appended to its log; record its PID file.

    `die_with_parent` (Linux, for test fixtures): the service gets SIGTERM when the process
    that started it dies, even killed without cleanup, so no broker outlives a killed pytest.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    logfile = log_path(log_dir, name)
    with logfile.open("ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} start {list(argv)}\n".encode())
        out.flush()
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
                preexec_fn=parent_death_hook() if die_with_parent else None,
            )
        except FileNotFoundError as exc:
            raise MissingBinaryError(f"{name}: executable not found: {argv[0]}") from exc
    proc = psutil.Process(popen.pid)
    try:
        record = PidRecord(
            popen.pid, _exec_cmdline(proc), proc.create_time(), start_ticks(popen.pid)
        )
    except psutil.NoSuchProcess as exc:
        raise ServiceError(f"{name} exited at once\n{tail(logfile)}") from exc
    record.write(pid_path(run_dir, name))
    log.info("service started", service=name, pid=popen.pid, log=str(logfile))
    return proc


def parent_death_hook() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the child when its parent dies (else None).

    prctl is looked up here, in the parent: the child only calls it (no dlopen after fork).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)

    def hook() -> None:
        prctl(pr_set_pdeathsig, sigterm)

    return hook


def _exec_cmdline(proc: psutil.Process, timeout_s: float = 2.0) -> list[str]:
    """The command line of a just-started process, once exec has filled it in.

    Right after a vfork+exec, /proc/<pid>/cmdline can read empty for a moment.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        cmdline = proc.cmdline()
        if cmdline or time.monotonic() >= deadline:
            return cmdline
        time.sleep(0.01)


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until `procs` are dead (zombies count as dead); returns the survivors."""
    deadline = time.monotonic() + timeout_s
    alive = [p for p in procs if _is_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _is_alive(p)]
    return alive


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    body = "\n".join(text.splitlines()[-lines:])
    return f"--- last {lines} lines of {path} ---\n{body}"


def wait_healthy(
    name: str,
    check: HealthCheck,
    *,
    proc: psutil.Process | None,
    logfile: Path,
    timeout_s: float,
    interval_s: float = 0.1,
) -> None:
    """Poll `check` until it passes; raise with the log's tail on timeout or early exit."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            log.info("service healthy", service=name)
            return
        if proc is not None and not _is_alive(proc):
            raise ServiceError(f"{name} exited before becoming healthy\n{tail(logfile)}")
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"{name} not healthy after {timeout_s:.0f}s (pid "
                f"{proc.pid if proc else '-'})\n{tail(logfile)}"
            )
        time.sleep(interval_s)


def _signal_group(proc: psutil.Process, sig: signal.Signals) -> None:
    """Signal the process group led by `proc` (it was started in its own session)."""
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass


def stop(run_dir: Path, name: str, *, timeout_s: float = 10.0) -> bool:
    """Stop the process recorded for `name`: SIGTERM, wait, then SIGKILL its group.

    Returns True if a process was stopped, False if none was running. The PID file is removed.
    """
    proc = running_process(run_dir, name)
    path = pid_path(run_dir, name)
    if proc is None:
        return False
    pid = proc.pid
    try:
        own_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        own_group = False
    try:
        children = proc.children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _is_alive(proc) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _is_alive(proc):
        log.warning("service ignored SIGTERM, killing its group", service=name, pid=pid)
        _signal_group(proc, signal.SIGKILL)
        try:
            proc.wait(timeout=5)
        except psutil.TimeoutExpired as exc:
            raise ServiceError(f"{name} (pid {pid}) survived SIGKILL") from exc
        except psutil.NoSuchProcess:
            pass
    if own_group:
        _kill_leftover_group(pid)
    _reap(pid)
    # Children that left the group (their own setsid) are still ours: recorded before stopping.
    for child in _wait_gone(children, timeout_s=5):
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    path.unlink(missing_ok=True)
    log.info("service stopped", service=name, pid=pid)
    return True


def kill(run_dir: Path, name: str) -> bool:
    """SIGKILL the process group recorded for `name` at once (a crash, for tests); True if one
    was running. The PID file is removed."""
    proc = running_process(run_dir, name)
    if proc is None:
        return False
    _signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
        proc.wait(timeout=10)
    _reap(proc.pid)
    pid_path(run_dir, name).unlink(missing_ok=True)
    log.info("service killed", service=name, pid=proc.pid)
    return True


def _kill_leftover_group(pgid: int) -> None:
    """Kill children that outlived their group leader (same process group, our session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def uptime_s(proc: psutil.Process) -> float | None:
    try:
        return time.time() - proc.create_time()
    except psutil.NoSuchProcess:
        return None


def rss_bytes(proc: psutil.Process) -> int | None:
    """Resident memory of `proc` and its children (bytes), or None if it is gone."""
    try:
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs)
    except psutil.NoSuchProcess:
        return None


def tcp_port_taken(host: str, port: int) -> bool:
    """True if something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0

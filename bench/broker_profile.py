"""`BENCH_JFR=<folder>`: where the bench's Kafka broker spends its CPU, from Java Flight Recorder.

The broker is a JVM, which py-spy cannot sample. `jcmd <pid> JFR.start` records the broker's
own execution samples while a run is measured (JFR ships with the JDK and runs inside the
broker; its `profile` settings cost about 2 %); `summary` reads them back with the JDK's `jfr`
tool and says which kind of request the samples were serving, and how many fell in a few
named phases of a fetch and a produce.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

#: KafkaApis' handler of each request kind, as it appears in a sample's stack
_HANDLERS = {
    "handleFetchRequest": "fetch",
    "handleProduceRequest": "produce",
    "handleOffsetCommitRequest": "offset commit",
    "handleOffsetFetchRequest": "offset fetch",
    "handleListOffsetRequest": "list offsets",
    "handleHeartbeatRequest": "heartbeat",
    "handleMetadataRequest": "metadata",
    "Processor.run": "network threads",  # SocketServer's: reading requests, writing responses
}

#: methods whose share is printed on its own: where a fetch's and a produce's work goes
_PHASES = {
    "ReplicaManager.readFromLog": "reading every partition of a fetch (session)",
    "DelayedFetch.tryComplete": "checking waiting fetches after a write",
    "ReplicaManager.appendRecords": "appending produced records",
}


def broker_pids() -> list[int]:
    """The JVMs this bench started (its brokers)."""
    import psutil

    return [c.pid for c in psutil.Process().children(recursive=True) if "java" in c.name()]


def start(pid: int, seconds: float, path: Path) -> bool:
    """Record `pid`'s samples for `seconds` into `path`; False when the JDK has no jcmd."""
    jcmd = shutil.which("jcmd")
    if jcmd is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [jcmd, str(pid), "JFR.start", "name=bench", "settings=profile",
         f"duration={max(1, int(seconds))}s", f"filename={path.resolve()}"],
        capture_output=True, text=True, check=False)
    return done.returncode == 0


def summary(path: Path) -> str:
    """One line: the samples' split by request kind, and the share of a few named phases."""
    jfr = shutil.which("jfr")
    if jfr is None or not path.exists():
        return f"no recording at {path}"
    # the whole stack (`jfr print` keeps 5 frames by default): the handler is near its root
    printed = subprocess.run([jfr, "print", "--json", "--stack-depth", "256", "--events",
                              "jdk.ExecutionSample", str(path)],
                             capture_output=True, text=True, check=True).stdout
    events = json.loads(printed)["recording"]["events"]
    kinds: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for event in events:
        frames = {f"{f['method']['type']['name'].rsplit('/', 1)[-1]}.{f['method']['name']}"
                  for f in event["values"]["stackTrace"]["frames"]}
        methods = {name.rsplit(".", 1)[-1] for name in frames}
        kinds[next((kind for handler, kind in _HANDLERS.items()
                    if handler in methods or handler in frames), "other")] += 1
        inclusive.update(frames)
    total = max(len(events), 1)
    split = ", ".join(f"{kind} {100 * n / total:.0f}%" for kind, n in kinds.most_common())
    phases = ", ".join(f"{what} ({name}) {100 * inclusive[name] / total:.0f}%"
                       for name, what in _PHASES.items())
    return (f"broker JFR ({len(events):,} execution samples, {path}): by request {split}; "
            f"of all samples: {phases}")

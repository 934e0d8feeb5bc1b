"""Java dependencies from Maven Central, fetched once with the machine's `mvn` and cached.

A **bundle** is a small pom under `infra/poms/<bundle>.xml` (the Kafka broker, Spark's Delta and
Kafka connectors ...). `ensure(bundle)` copies its runtime dependencies into
`<jars dir>/<bundle>/` with `mvn dependency:copy-dependencies`, then writes a stamp holding the
pom's digest: a later call with the same pom downloads nothing. The copy goes to a temporary
folder renamed into place, so an interrupted fetch never leaves a half-filled bundle behind.

The jars dir is `$BRAID_JARS_DIR`, else `var/jars` at the repository root (ignored by git).

    python -m infra.jars kafka spark     # what scripts/setup.sh runs
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import structlog

from infra.processes import MissingBinaryError, ServiceError

log = structlog.get_logger(__name__)

POMS_DIR = Path(__file__).resolve().parent / "poms"
REPO_ROOT = Path(__file__).resolve().parent.parent
STAMP = ".pom-sha256"


class MavenFetchError(ServiceError):
    """Maven ran but could not resolve a bundle (registry unreachable, artifact missing)."""


def jars_dir() -> Path:
    """Where bundles are cached: `$BRAID_JARS_DIR`, else `<repo>/var/jars`."""
    configured = os.environ.get("BRAID_JARS_DIR")
    return Path(configured) if configured else REPO_ROOT / "var" / "jars"


def bundles() -> list[str]:
    """The bundle names there are poms for."""
    return sorted(p.stem for p in POMS_DIR.glob("*.xml"))


def pom_path(bundle: str) -> Path:
    path = POMS_DIR / f"{bundle}.xml"
    if not path.is_file():
        raise ValueError(f"unknown jar bundle {bundle!r}; known: {bundles()}")
    return path


def _digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def bundle_dir(bundle: str) -> Path:
    return jars_dir() / bundle


def is_present(bundle: str) -> bool:
    """True if the bundle was fetched from its current pom."""
    stamp = bundle_dir(bundle) / STAMP
    return stamp.is_file() and stamp.read_text().strip() == _digest(pom_path(bundle))


def jar_files(bundle: str) -> list[Path]:
    """The bundle's jars (fetching them first if needed), sorted by name."""
    return sorted(ensure(bundle).glob("*.jar"))


def _mvn() -> str:
    found = shutil.which("mvn")
    if found is None:
        raise MissingBinaryError(
            "Maven (`mvn`) is needed to fetch Java dependencies from Maven Central: "
            "sudo apt-get install maven (scripts/setup.sh does it when run as root)"
        )
    return found


def ensure(bundle: str) -> Path:
    """The folder holding `bundle`'s jars; fetched with Maven unless already present."""
    pom = pom_path(bundle)
    target = bundle_dir(bundle)
    if is_present(bundle):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{bundle}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        _mvn(), "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]
    started = time.monotonic()
    log.info("fetching jars from Maven Central", bundle=bundle, into=str(target))
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(staging.glob("*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        lines = [ln for ln in (result.stdout + result.stderr).splitlines() if "ERROR" in ln]
        reason = lines[0].strip() if lines else f"mvn exited {result.returncode}"
        raise MavenFetchError(
            f"could not fetch the {bundle} jars from Maven Central ({pom.name}): {reason}; "
            "check that Maven Central is reachable (proxy settings in ~/.m2/settings.xml)"
        )
    (staging / STAMP).write_text(_digest(pom))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    log.info("jars fetched", bundle=bundle, jars=len(list(target.glob("*.jar"))),
             seconds=round(time.monotonic() - started, 1))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.jars",
        description="Fetch Java dependency bundles from Maven Central into the jar cache "
        "(nothing is downloaded for a bundle already present).",
    )
    parser.add_argument("bundles", nargs="*",
                        help=f"bundles to fetch (default: all of {bundles()})")
    args = parser.parse_args(argv)
    try:
        for bundle in args.bundles or bundles():
            print(f"{bundle}: {ensure(bundle)}")
    except (ServiceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""pyproject.toml declares what Braid imports, and nothing else; the installed set is consistent.

Every module imported anywhere in Braid's packages (top-level or inside a function) must come
from a distribution declared in `[project] dependencies`, not from one that happens to arrive
through another package; every declared distribution must be imported, or be marked `not
imported` in pyproject.toml with what needs it (a binary, an extension, a plug-in loaded by
name). Tests and benchmarks may also use the `dev` extra. Imports are read with `ast` (nothing
is imported here); a module is mapped to the installed distribution whose files hold it.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import subprocess
import sys
import tomllib
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("features", "streaming", "batch", "serving", "training", "orchestration", "infra",
           "cli", "feature_repo")
FIRST_PARTY = {*RUNTIME, "tests", "bench", "support"}
# bench/quix_ohlcv_app.py runs in its own venv (bench/.venv-quix): Quix pins another
# confluent-kafka, so quixstreams cannot be one of Braid's dependencies
OWN_VENV = {ROOT / "bench" / "quix_ohlcv_app.py"}
# distributions a declared one installs by design, under another name
PROVIDED_BY = {"mlflow-skinny": "mlflow", "mlflow-tracing": "mlflow"}


def _name(requirement: str) -> str:
    """`feast[redis,duckdb]==0.67.0` -> `feast` (normalised as PEP 503)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _declared(extra: str | None = None) -> set[str]:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    items = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return {_name(r) for r in items}


def _marked_not_imported() -> set[str]:
    """Runtime dependencies whose line in pyproject.toml says `# not imported: <why>`."""
    lines = (ROOT / "pyproject.toml").read_text().splitlines()
    start = lines.index("dependencies = [")
    end = lines.index("]", start)
    return {_name(line.strip().strip('"')) for line in lines[start + 1:end]
            if line.strip().startswith('"') and "# not imported:" in line}


def _imports(folders: tuple[str, ...]) -> dict[str, set[str]]:
    """Dotted module names imported under `folders` (absolute imports outside the standard
    library and Braid) -> the files importing them."""
    found: dict[str, set[str]] = defaultdict(set)
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path in OWN_VENV or any(part.startswith(".venv") for part in path.parts):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found[name].add(str(path.relative_to(ROOT)))
    return found


@cache
def _owners() -> dict[str, set[str]]:
    """Module path (`google/cloud/dataproc_v1`, `sklearn`) -> installed distributions holding it."""
    owners: dict[str, set[str]] = defaultdict(set)
    for dist in metadata.distributions():
        name = _name(dist.metadata["Name"])
        for file in dist.files or ():
            parts = file.parts
            if not parts or parts[0].endswith((".dist-info", ".data")) or parts[0] == "..":
                continue
            stem = [*parts[:-1], parts[-1].split(".")[0]]
            for depth in range(1, len(stem) + 1):
                owners["/".join(stem[:depth])].add(name)
    return owners


def _distributions_of(module: str) -> set[str]:
    """The distributions owning the deepest part of `module` that any distribution owns."""
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        holders = _owners().get("/".join(parts[:depth]))
        if holders:
            return {PROVIDED_BY.get(h, h) for h in holders}
    return set()


def _undeclared(folders: tuple[str, ...], declared: set[str]) -> dict[str, str]:
    missing = {}
    for module, files in sorted(_imports(folders).items()):
        owners = _distributions_of(module)
        if not owners & declared:
            missing[module] = f"{sorted(owners) or 'not installed'} (in {sorted(files)[0]})"
    return missing


def test_every_module_braid_imports_comes_from_a_declared_dependency() -> None:
    assert _undeclared(RUNTIME, _declared()) == {}


def test_every_declared_dependency_is_imported_or_says_what_needs_it() -> None:
    used = set().union(*(_distributions_of(m) for m in _imports(RUNTIME)))
    unused = _declared() - used
    assert unused == _marked_not_imported(), (
        "declared, never imported, not marked `not imported`: "
        f"{sorted(unused - _marked_not_imported())}; marked but imported: "
        f"{sorted(_marked_not_imported() - unused)}")


def test_tests_and_benchmarks_import_only_declared_dependencies() -> None:
    assert _undeclared(("tests", "bench"), _declared() | _declared("dev")) == {}


def test_the_installed_environment_is_consistent() -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_mapping_finds_namespace_packages_and_renamed_wheels() -> None:
    # the checks above rest on this: google.* is split over many wheels, xgboost ships as
    # xgboost-cpu, sklearn as scikit-learn
    assert _distributions_of("google.cloud.dataproc_v1") == {"google-cloud-dataproc"}
    assert _distributions_of("google.protobuf.timestamp_pb2") == {"protobuf"}
    assert _distributions_of("xgboost") == {"xgboost-cpu"}
    assert _distributions_of("sklearn.metrics") == {"scikit-learn"}
    assert _distributions_of("mlflow.xgboost") == {"mlflow"}

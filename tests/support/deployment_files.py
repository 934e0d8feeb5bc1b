"""What the deployment files run and set, read the way their tools read them, and what counts as
a real command line or a real setting (tests/unit/test_deployment_files.py).

Compose is read through `docker-compose config --format json` (compose-go: anchors, merges and
env_file resolved) and Kubernetes through `kubectl kustomize` of an overlay, so the tests see
exactly what an engine or a cluster would get.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
K8S = ROOT / "infra" / "k8s"
OVERLAYS = ("dev", "prod")
#: Images other than Braid's that the files run; their commands and variables are theirs.
THIRD_PARTY_IMAGES = ("apache/kafka:", "redis:")
#: Braid's top-level packages (pyproject.toml: [tool.setuptools.packages.find]).
PACKAGES = ("features", "streaming", "batch", "training", "orchestration", "infra", "cli",
            "serving")


def tool(name: str) -> str:
    """A validator installed in the project's environment (pinned in the `dev` extra)."""
    path = BIN / name
    assert path.is_file(), f"{name} is not installed: .venv/bin/pip install -e '.[dev]'"
    return str(path)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def compose_config() -> dict[str, Any]:
    """compose.yaml as compose-go resolves it, every profile included."""
    done = run(tool("docker-compose"), "-f", "compose.yaml", "--profile", "*", "config",
               "--format", "json")
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def kustomize(overlay: str) -> list[dict[str, Any]]:
    """The resources `kubectl kustomize` renders for an overlay."""
    done = run(tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay))
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def is_braid_image(image: str) -> bool:
    if image.startswith(THIRD_PARTY_IMAGES):
        return False
    # compose: ${BRAID_IMAGE:-braid:latest}; kustomize: the overlay's registry path
    return image.rsplit("/", 1)[-1].split(":")[0] == "braid"


@dataclass(frozen=True)
class Container:
    """One container of a compose service or a pod template."""

    where: str  # "compose:api", "prod:Deployment/api"
    image: str
    command: tuple[str, ...]
    probes: tuple[tuple[str, ...], ...]  # exec commands of health checks and probes
    env: dict[str, str | None]  # name -> literal value (None: from a Secret or a field)
    config_maps: tuple[str, ...]  # envFrom config maps
    spec: dict[str, Any]


def compose_containers(config: dict[str, Any]) -> Iterator[Container]:
    for name, service in config["services"].items():
        test = (service.get("healthcheck") or {}).get("test") or []
        probes = (tuple(test[1:]),) if test[:1] == ["CMD"] else ()
        yield Container(f"compose:{name}", service["image"], tuple(service.get("command") or ()),
                        probes, dict(service.get("environment") or {}), (), service)


def pod_containers(overlay: str, docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any],
                                                                               Container]]:
    """(workload, container) of every Deployment, StatefulSet and Job."""
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for container in pod["containers"]:
            probes = tuple(
                tuple(container[kind]["exec"]["command"])
                for kind in ("startupProbe", "readinessProbe", "livenessProbe")
                if "exec" in container.get(kind, {}))
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            maps = tuple(source["configMapRef"]["name"] for source in container.get("envFrom", [])
                         if "configMapRef" in source)
            command = (*container.get("command", ()), *container.get("args", ()))
            yield doc, Container(f"{overlay}:{doc['kind']}/{doc['metadata']['name']}",
                                 container["image"], command, probes, env, maps, container)


# --- command lines ---------------------------------------------------------------------------

def resolve_click(group: Any, prog: str, argv: list[str]) -> str:
    """Parse `argv` as `prog` would (sub-commands, options, their types) without running it;
    returns the command path. Raises the CLI's UsageError on anything it would refuse. Works
    for click and for typer's own copy of click (typer >= 0.25), hence no isinstance."""
    ctx = group.make_context(prog, list(argv))
    command, path = group, [prog]
    while hasattr(command, "resolve_command"):
        rest = [*ctx._protected_args, *ctx.args]
        name, sub, args = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, args, parent=ctx)
        command = sub
        path.append(name)
    return " ".join(path)


def resolve_command(argv: tuple[str, ...]) -> str:
    """The entry point an argv runs in Braid's image, checked against its own parser."""
    program, *args = argv
    if program == "braid":
        import typer

        from cli.main import app

        return resolve_click(typer.main.get_command(app), "braid", args)
    if program == "feast":
        from feast.cli.cli import cli as feast_cli

        return resolve_click(feast_cli, "feast", args)
    if program == "mlflow":
        from mlflow.cli import cli as mlflow_cli

        return resolve_click(mlflow_cli, "mlflow", args)
    if program == "prefect":
        from prefect.cli._app import _app as prefect_app

        command, _bound, *_ = prefect_app.parse_args(args, exit_on_error=False,
                                                      print_error=False)
        return f"prefect {command.__module__}.{command.__name__}"
    if program == "python" and args[:2] == ["-m", "infra.probe"]:
        from infra.probe import build_parser

        try:
            parsed = build_parser().parse_args(args[2:])
        except SystemExit as exit_:
            raise ValueError(f"infra.probe refuses {args[2:]}") from exit_
        return f"python -m infra.probe {parsed.check}"
    raise ValueError(f"{program!r} is not an entry point of Braid's image")


def expand_k8s_vars(argv: tuple[str, ...], env: dict[str, str]) -> tuple[str, ...]:
    """Kubernetes' $(VAR) expansion in command and args; an unknown VAR fails."""
    def value(match: re.Match[str]) -> str:
        assert match.group(1) in env, f"$({match.group(1)}) is set nowhere"
        return env[match.group(1)]
    return tuple(re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value, arg) for arg in argv)


# --- settings ----------------------------------------------------------------------------------

def _python_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from (ROOT / package).rglob("*.py")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def braid_settings() -> set[str]:
    """The variable names of every pydantic-settings class in Braid's packages (env prefix plus
    field name, or the field's aliases)."""
    from pydantic import AliasChoices
    from pydantic_settings import BaseSettings

    for path in _python_files():
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.ClassDef) and any(
                getattr(base, "id", getattr(base, "attr", "")) == "BaseSettings"
                for base in node.bases) for node in ast.walk(tree)):
            importlib.import_module(_module_name(path))
    names: set[str] = set()
    pending = list(BaseSettings.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] not in PACKAGES:
            continue
        prefix = cls.model_config.get("env_prefix", "")
        for field_name, field in cls.model_fields.items():
            alias = field.validation_alias or field.alias
            if isinstance(alias, str):
                names.add(alias.upper())
            elif isinstance(alias, AliasChoices):
                names.update(str(choice).upper() for choice in alias.choices)
            else:
                names.add(f"{prefix}{field_name}".upper())
    return names


def click_envvars(command: Any) -> set[str]:
    """Every `envvar` of a click (or typer) command tree's options."""
    names: set[str] = set()
    pending = [command]
    while pending:
        current = pending.pop()
        for param in current.params:
            envvar = getattr(param, "envvar", None)
            names.update([envvar] if isinstance(envvar, str) else envvar or [])
        pending.extend(getattr(current, "commands", {}).values())
    return names


def environ_reads() -> set[str]:
    """Names Braid's code reads straight from the environment (os.environ / os.getenv)."""
    names: set[str] = set()
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            target = None
            if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
                func = ast.unparse(node.func)
                if func in ("os.environ.get", "os.getenv", "os.environ.setdefault"):
                    target = node.args[0]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                target = node.slice
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                names.add(target.value)
    return names


def documented_settings() -> set[str]:
    """Names `.env.example` documents (set, or commented out with their default)."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def feast_yaml_variables() -> set[str]:
    """Names the Feast profiles in feature_repo/ expand (`${VAR}` in feature_store*.yaml)."""
    return {name for path in (ROOT / "feature_repo").glob("feature_store*.yaml")
            for name in re.findall(r"\$\{(\w+)\}", path.read_text())}


def real_settings() -> dict[str, set[str]]:
    """Every variable a container of Braid's image may set, by who reads it."""
    import typer
    from feast import constants as feast_constants
    from feast.cli.cli import cli as feast_cli
    from mlflow import environment_variables
    from mlflow.cli import cli as mlflow_cli
    from prefect.settings import Settings
    from prefect.settings.legacy import _get_valid_setting_names

    from cli.main import app

    mlflow_vars = {value.name for value in vars(environment_variables).values()
                   if type(value).__name__.endswith("EnvironmentVariable")}
    return {
        "Braid's pydantic settings": braid_settings(),
        "`braid` options": click_envvars(typer.main.get_command(app)),
        "read by Braid's code or Feast profiles, documented in .env.example":
            (environ_reads() | feast_yaml_variables()) & documented_settings(),
        "Prefect's settings": set(_get_valid_setting_names(Settings)),
        "MLflow's variables": mlflow_vars | click_envvars(mlflow_cli),
        "Feast's variables": click_envvars(feast_cli) | {
            value for name, value in vars(feast_constants).items()
            if name.endswith(("_ENV_NAME", "_ENV_VAR")) and isinstance(value, str)},
    }

"""The Dockerfile, compose.yaml and the Kubernetes overlays, checked by the tools that read them
(hadolint, compose-go, the compose-spec schema, kustomize, the Kubernetes API schemas in strict
mode) and against Braid itself: every command they run parses with the real CLI, every variable
they set is a real setting, every processor's replicas fit its topics' partitions.

The validators are pinned in the `dev` extra and run offline; nothing is skipped."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from streaming.settings import TopicSettings
from streaming.topics import (
    CANDLES,
    INDICATORS,
    SENSOR_FEATURES,
    SENSOR_INPUTS,
    TRADES,
    catalogue,
)
from tests.support.deployment_files import (
    K8S,
    OVERLAYS,
    ROOT,
    compose_config,
    compose_containers,
    expand_k8s_vars,
    is_braid_image,
    kustomize,
    pod_containers,
    real_settings,
    resolve_command,
    run,
    tool,
)

#: The topics each consumer group reads (the commands' own subscriptions, streaming/pipelines).
CONSUMED = {
    "braid markets candles": (TRADES,),
    "braid markets indicators": (CANDLES,),
    "braid markets predictor": (INDICATORS,),
    "braid sensors windows": ("SZ",),
    "braid sensors join": ("SX", "SY", *SENSOR_FEATURES),
    "braid sensors archive": (*SENSOR_INPUTS, *SENSOR_FEATURES),
    "braid online-sink": (CANDLES, INDICATORS, *SENSOR_FEATURES, "SX", "SY"),
}
#: What the whole stack runs, in compose and in every overlay.
STACK = {*CONSUMED, "braid api", "braid flows serve", "feast serve", "mlflow server"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_config()


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: kustomize(overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="module")
def settings() -> dict[str, set[str]]:
    return real_settings()


def config_map(docs: list[dict[str, Any]]) -> dict[str, str]:
    (found,) = [d for d in docs if d["kind"] == "ConfigMap"
                and d["metadata"]["name"].startswith("braid-settings")]
    data: dict[str, str] = found["data"]
    return data


# --- Dockerfile ------------------------------------------------------------------------------

def test_dockerfile_passes_hadolint() -> None:
    done = run(tool("hadolint"), "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_dockerfile_is_multi_stage_non_root_labelled_and_health_checked() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.replace("\\\n", " ").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert lines[0] == "ARG BASE_IMAGE=python:3.11-slim-bookworm"
    assert froms[0] == "FROM ${BASE_IMAGE} AS base" and len(froms) >= 3
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    labels = dict(re.findall(r'org\.opencontainers\.image\.(\w+)="\$\{(\w+)\}"', text))
    assert labels == {"source": "SOURCE", "revision": "REVISION", "created": "CREATED",
                      "version": "VERSION"}
    assert {f"ARG {arg}" for arg in labels.values()} <= {line.split("=")[0] for line in lines}
    (health,) = [line for line in lines if line.startswith("HEALTHCHECK ")]
    assert resolve_command(tuple(yaml.safe_load(health.split(" CMD ", 1)[1]))) == (
        "python -m infra.probe kafka")
    assert "openjdk-17-jre-headless" in text and "python -m infra.jars spark" in text


def test_image_holds_every_package_and_the_dockerignore_keeps_secrets_out() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]
                ["include"]}
    copied = set(re.findall(r"^COPY (\w+)/ \1/$", (ROOT / "Dockerfile").read_text(), re.M))
    assert copied == packages | {"feature_repo"}
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") + 1:].count("!.env") == 0 and "*" in ignore
    assert {f"!{p}/" for p in copied} | {"!pyproject.toml", "!README.md"} <= set(ignore)


# --- compose ---------------------------------------------------------------------------------

def test_compose_config_is_valid() -> None:
    done = run(tool("docker-compose"), "-f", "compose.yaml", "--profile", "*", "config", "-q")
    assert done.returncode == 0, done.stderr


def test_compose_matches_the_compose_spec_schema() -> None:
    done = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
               "compose.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_the_whole_stack_with_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    runs = {name: resolve_command(tuple(s["command"])) for name, s in services.items()
            if is_braid_image(s["image"])}
    assert {*STACK, "braid topics create", "feast apply"} <= set(runs.values())
    assert "prefect prefect.cli.server.start" in runs.values()
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["redis"]["image"].startswith("redis:")
    for name, service in services.items():
        if service.get("restart") == "no":  # one-shots: topics, feast apply, the simulators
            continue
        health = service.get("healthcheck") or {}
        assert health.get("test") and not health.get("disable"), f"{name} has no health check"
    for name, command in runs.items():
        if command.startswith("braid ") and command != "braid topics create":
            needs = services[name].get("depends_on") or {}
            assert needs.get("topics", {}).get("condition") == (
                "service_completed_successfully"), f"{name} starts before the topics exist"


def test_compose_and_kubernetes_read_the_same_settings_file(compose: dict[str, Any]) -> None:
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    (generator,) = base["configMapGenerator"]
    settings_file = (K8S / "base" / generator["envs"][0]).resolve()
    raw = yaml.safe_load((ROOT / "compose.yaml").read_text())  # env_file before resolution
    settings = dict(line.split("=", 1) for line in settings_file.read_text().splitlines()
                    if line and not line.startswith("#"))
    for name, service in raw["services"].items():
        if is_braid_image(compose["services"][name]["image"]):
            assert [(ROOT / f).resolve() for f in service["env_file"]] == [settings_file], name
            resolved = compose["services"][name]["environment"]
            assert {k: resolved[k] for k in settings} == settings, name


# --- Kubernetes ------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_strictly(overlay: str, tmp_path: Path) -> None:
    done = run(tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay))
    assert done.returncode == 0, done.stderr
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(done.stdout)
    checked = run(tool("kubernetes-validate"), "--strict", "--quiet", str(manifest))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "passed" in run(tool("kubernetes-validate"), "--strict", str(manifest)).stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_runs_the_stack_in_its_namespace(
        overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered[overlay]
    namespace = f"braid-{overlay}"
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"] == [namespace]
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        namespace}
    env = config_map(docs)
    runs = {resolve_command(expand_k8s_vars(container.command, env)): doc
            for doc, container in pod_containers(overlay, docs)
            if is_braid_image(container.image)}
    assert {*STACK, "braid topics create", "feast apply",
            "prefect prefect.cli.server.start"} <= set(runs)
    assert runs["braid flows serve"]["metadata"]["name"] == "prefect-worker"
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    for name, port in (("api", 8000), ("feature-server", 6566)):
        (service_port,) = services[name]["spec"]["ports"]
        assert service_port["port"] == port
        (workload,) = [d for d in docs if d["kind"] == "Deployment"
                       and d["metadata"]["name"] == name]
        pod = workload["spec"]["template"]
        assert services[name]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        (container,) = pod["spec"]["containers"]
        assert {"name": service_port["targetPort"], "containerPort": port} in container["ports"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/health",
                                                   "port": service_port["targetPort"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_sized_probed_and_unprivileged(
        overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    for doc, container in pod_containers(overlay, rendered[overlay]):
        pod = doc["spec"]["template"]["spec"]
        resources = container.spec["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), container.where
        assert "memory" in resources["limits"], container.where
        assert pod["enableServiceLinks"] is False, container.where
        assert pod["securityContext"]["runAsNonRoot"] is True, container.where
        assert container.spec["securityContext"]["allowPrivilegeEscalation"] is False
        if doc["kind"] != "Job":
            assert "readinessProbe" in container.spec, container.where
        if is_braid_image(container.image):
            assert container.spec["imagePullPolicy"] == "IfNotPresent"
            assert container.image != "braid" or overlay == "dev", "prod names its registry"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_committed(
        overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered[overlay]
    assert not [d for d in docs if d["kind"] == "Secret"]
    for path in K8S.rglob("kustomization.yaml"):
        assert "secretGenerator" not in yaml.safe_load(path.read_text()), path
    referenced = set()
    for _doc, container in pod_containers(overlay, docs):
        for entry in container.spec.get("env", []):
            secret = entry.get("valueFrom", {}).get("secretKeyRef")
            if secret:
                assert secret["name"] == "braid-secrets", container.where
                referenced.add((entry["name"], secret["key"]))
        assert not [s for s in container.spec.get("envFrom", []) if "secretRef" in s]
    if overlay == "prod":
        assert referenced == {("KAFKA_SASL_USERNAME", "kafka-sasl-username"),
                              ("KAFKA_SASL_PASSWORD", "kafka-sasl-password"),
                              ("BRAID_FEAST_REDIS", "feast-redis"),
                              ("BRAID_API_TOKEN", "api-token")}
        # documented where users create the Secret
        readme = (ROOT / "infra" / "README.md").read_text()
        assert all(f"--from-literal={key}=" in readme for _name, key in referenced)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_processor_replicas_stay_within_their_partitions(
        overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered[overlay]
    env = config_map(docs)
    topics = TopicSettings(
        market_partitions=int(env["BRAID_TOPIC_MARKET_PARTITIONS"]),
        sensor_partitions=int(env["BRAID_TOPIC_SENSOR_PARTITIONS"]))
    partitions = {spec.name: spec.partitions for spec in catalogue(topics)}
    seen = set()
    for doc, container in pod_containers(overlay, docs):
        if doc["kind"] != "Deployment" or not is_braid_image(container.image):
            continue
        group = resolve_command(expand_k8s_vars(container.command, env))
        if doc["metadata"]["labels"].get("app.kubernetes.io/component") == "processor":
            assert group in CONSUMED, f"{container.where}: which topics does {group} read?"
        if group in CONSUMED:
            seen.add(group)
            bound = max(partitions[name] for name in CONSUMED[group])
            assert 1 <= doc["spec"]["replicas"] <= bound, container.where
            probe = container.spec["readinessProbe"]["exec"]["command"]
            assert resolve_command(tuple(probe)) == "python -m infra.probe kafka"
    assert seen == set(CONSUMED)


# --- commands and settings, everywhere -------------------------------------------------------

def test_every_command_is_a_real_entry_point(
        compose: dict[str, Any], rendered: dict[str, list[dict[str, Any]]]) -> None:
    containers = list(compose_containers(compose))
    for overlay, docs in rendered.items():
        env = config_map(docs)
        for _doc, container in pod_containers(overlay, docs):
            containers.append(container.__class__(
                container.where, container.image, expand_k8s_vars(container.command, env),
                container.probes, container.env, container.config_maps, container.spec))
    checked = 0
    for container in containers:
        if not is_braid_image(container.image):
            assert container.image.startswith(("apache/kafka:", "redis:")), container.where
            continue
        assert container.command, f"{container.where} runs the image's default"
        for argv in (container.command, *container.probes):
            try:
                resolve_command(argv)
            except Exception as error:
                pytest.fail(f"{container.where}: {' '.join(argv)}: {error}")
            checked += 1
    assert checked >= 60


@pytest.mark.parametrize(("wrong", "right"), [
    (("braid", "markets", "candle"), ("braid", "markets", "candles")),
    (("braid", "api", "--prot", "1"), ("braid", "api", "--port", "1")),
    (("braid", "sensors", "archive"), ("braid", "sensors", "archive", "--root", "var/a")),
    (("feast", "serve", "--port", "x"), ("feast", "serve", "--port", "1")),
    (("mlflow", "server", "--hots", "0"), ("mlflow", "server", "--host", "0")),
    (("prefect", "server", "begin"), ("prefect", "server", "start")),
    (("python", "-m", "infra.probe", "tcp"), ("python", "-m", "infra.probe", "kafka")),
    (("spark-shell",), ("braid", "topics", "create")),
])
def test_a_misspelt_command_or_option_is_caught(wrong: tuple[str, ...],
                                                right: tuple[str, ...]) -> None:
    """The resolution fails on what the CLI would refuse, and only on that: the corrected
    line passes (so the checks above cannot pass vacuously)."""
    resolve_command(right)
    with pytest.raises(Exception):  # noqa: B017 - each CLI raises its own kind of usage error
        resolve_command(wrong)


def test_every_variable_set_is_a_real_setting(
        compose: dict[str, Any], rendered: dict[str, list[dict[str, Any]]],
        settings: dict[str, set[str]]) -> None:
    known = set().union(*settings.values())
    assert {"KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SASL_PASSWORD", "BRAID_TOPIC_SENSOR_PARTITIONS",
            "BRAID_API_TOKEN", "BRAID_FLOW_SENSOR_ARCHIVE", "BRAID_LOG_LEVEL",
            "BRAID_JARS_DIR", "PREFECT_API_URL", "MLFLOW_ARTIFACTS_DESTINATION",
            "FEAST_FS_YAML_FILE_PATH"} <= known
    assert "BRAID_API_TOKN" not in known and "KAFKA_BOOTSTRAP_SERVER" not in known
    where: dict[str, str] = {}
    for container in compose_containers(compose):
        if is_braid_image(container.image):
            where |= {name: container.where for name in container.env}
    for overlay, docs in rendered.items():
        where |= {name: f"{overlay}:ConfigMap" for name in config_map(docs)}
        for _doc, container in pod_containers(overlay, docs):
            if is_braid_image(container.image):
                where |= {name: container.where for name in container.env}
    dockerfile = (ROOT / "Dockerfile").read_text()
    where |= {name: "Dockerfile" for name in re.findall(r"\b(BRAID_\w+)=", dockerfile)}
    unknown = {name: place for name, place in where.items() if name not in known}
    assert not unknown, f"not a setting of Braid or of the tool it configures: {unknown}"
    assert len(where) >= 30

"""Models from the MLflow registry, checked against their feature service and hot-swapped.

- :func:`load_model` loads `models:/<name>@<alias>` (the alias is resolved to a version first,
  so the version reported is the one loaded), `models:/<name>/<version>` or any other MLflow
  model URI with `mlflow.xgboost`, after checking that the model's signature lists exactly the
  feature service's columns in order (`features.model_contract`). A model without a signature
  or with other columns is refused with :class:`ModelRefused`, whose one-line message prints
  both lists.
- :class:`ModelWatcher` keeps the current model of a URI: it polls the alias every
  `poll_s` seconds on a daemon thread and swaps in a new version once it has loaded and passed
  the check; a refused or unloadable version is logged and the previous model stays. Readers
  take `watcher.current` once per batch (one reference: a swap never splits a batch).
- :class:`RegistryAlertModel` makes a watched model a `features.sensors.model.AlertModel` for
  the sensors join (its `pinned()` gives the current model with its version, so a batch's
  probabilities and the version they carry come from the same model).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mlflow
import mlflow.xgboost
import numpy as np
import structlog
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from features.model_contract import FEATURE_SERVICES, feature_columns
from features.sensors.model import AlertModel
from features.sensors.schemas import VECTOR_FIELDS
from serving.feast_definitions import definitions

log = structlog.get_logger(__name__)

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


class ModelRefused(ValueError):
    """A model that cannot serve (no such alias, no signature, other columns): one line."""


@dataclass(frozen=True)
class LoadedModel:
    """A loaded XGBoost binary classifier and where it came from."""

    name: str
    version: str
    uri: str  # what was loaded (`models:/name/version` when it came from the registry)
    columns: tuple[str, ...]
    native: Any  # xgboost.XGBClassifier (mlflow.xgboost's sklearn flavour) or xgboost.Booster

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """P(class 1) for an (n, columns) float64 array in `columns` order."""
        x = np.asarray(features, dtype=np.float64)
        if isinstance(self.native, xgb.Booster):
            return np.asarray(self.native.predict(
                xgb.DMatrix(x, feature_names=list(self.columns))), dtype=np.float64)
        return np.asarray(self.native.predict_proba(x)[:, 1], dtype=np.float64)


def _resolve(uri: str, client: MlflowClient) -> tuple[str, str, str]:
    """(name, version, loadable URI) of a model URI; aliases resolved to their version."""
    alias = _ALIAS_URI.match(uri)
    if alias:
        try:
            found = client.get_model_version_by_alias(alias["name"], alias["alias"])
        except MlflowException as error:
            raise ModelRefused(f"no model at {uri}: {error.message.splitlines()[0]}") from error
        return alias["name"], str(found.version), f"models:/{alias['name']}/{found.version}"
    version = _VERSION_URI.match(uri)
    if version:
        return version["name"], version["version"], uri
    return uri, "0", uri


def check_signature(label: str, inputs: Sequence[str] | None, expected: Sequence[str],
                    service: str) -> None:
    """Refuse a model whose signature's input columns are not exactly `expected`, in order."""
    if inputs is None:
        raise ModelRefused(f"model {label} has no signature; feature service {service} needs "
                           f"inputs {list(expected)}")
    if list(inputs) != list(expected):
        raise ModelRefused(
            f"model {label} refused: its signature's inputs {list(inputs)} differ from feature "
            f"service {service}'s columns {list(expected)}")


def load_model(uri: str, expected: Sequence[str], service: str,
               client: MlflowClient | None = None) -> LoadedModel:
    """Load and check one model (see the module docstring)."""
    client = client or MlflowClient()
    name, version, loadable = _resolve(uri, client)
    label = f"{name}/{version}"
    try:
        info = mlflow.models.get_model_info(loadable)
    except (MlflowException, OSError) as error:
        raise ModelRefused(f"cannot read model {label} ({loadable}): {error}") from error
    inputs = info.signature.inputs.input_names() if info.signature is not None else None
    check_signature(label, [str(i) for i in inputs] if inputs is not None else None,
                    expected, service)
    if "xgboost" not in info.flavors:
        raise ModelRefused(f"model {label} is not an mlflow.xgboost model "
                           f"(flavours: {', '.join(info.flavors)})")
    native = mlflow.xgboost.load_model(loadable)
    # one thread per call: batches are a few rows, and OpenMP threads starting and spinning
    # cost more than they save (measured under load: 16 ms per call with 2 threads, 1-2 ms
    # with one)
    if isinstance(native, xgb.Booster):
        native.set_param({"nthread": 1})
    else:
        native.set_params(n_jobs=1)
    return LoadedModel(name, version, loadable, tuple(expected), native)


class ModelWatcher:
    """The current model of `uri`, re-checked every `poll_s` seconds (see the module)."""

    def __init__(self, uri: str, expected: Sequence[str], service: str, *, poll_s: float,
                 client: MlflowClient | None = None) -> None:
        self.uri = uri
        self.expected = tuple(expected)
        self.service = service
        self.poll_s = poll_s
        self.client = client or MlflowClient()
        self.current: LoadedModel | None = None
        self.refused: dict[str, str] = {}  # version -> reason, so it is not reloaded each poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = log.bind(model_uri=uri)

    def check(self) -> LoadedModel | None:
        """Look at the alias now; load and swap if it names another version. Returns the
        current model (the previous one when the new version is refused)."""
        try:
            name, version, _ = _resolve(self.uri, self.client)
        except ModelRefused as error:
            if self.refused.get("") != str(error):  # log each new reason once
                self._log.warning("model unavailable", reason=str(error),
                                  keeping=self.current.label if self.current else None)
            self.refused[""] = str(error)
            return self.current
        self.refused.pop("", None)
        if self.current is not None and self.current.version == version:
            return self.current
        if version in self.refused:
            return self.current
        try:
            model = load_model(self.uri, self.expected, self.service, self.client)
        except ModelRefused as error:
            self.refused[version] = str(error)
            self._log.error("model refused", reason=str(error),
                            keeping=self.current.label if self.current else None)
            return self.current
        except Exception as error:  # an artifact store hiccup must not stop the service
            self._log.warning("model load failed; retrying at the next poll",
                              version=f"{name}/{version}", error=str(error))
            return self.current
        previous = self.current
        self.current = model
        self._log.info("model loaded", model=model.label,
                       previous=previous.label if previous else None)
        return model

    def start(self) -> ModelWatcher:
        """Check now, then poll on a daemon thread."""
        self.check()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception as error:  # the registry unreachable: keep serving, try again
                self._log.warning("model poll failed", error=str(error))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


@dataclass(frozen=True)
class PinnedAlertModel:
    """One loaded sensors model as an `AlertModel` (integer vectors -> float64 columns)."""

    model: LoadedModel

    @property
    def version(self) -> str:
        return self.model.label

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(np.asarray(vectors, dtype=np.float64))


class RegistryAlertModel:
    """The sensors join's model from the registry, hot-swapped by a :class:`ModelWatcher`.
    The service's columns must be the join's vector in order (SX, SY, FA, FI, FD bins)."""

    def __init__(self, watcher: ModelWatcher) -> None:
        self.watcher = watcher

    def pinned(self) -> AlertModel:
        model = self.watcher.current
        if model is None:
            raise ModelRefused(f"no model loaded from {self.watcher.uri}")
        return PinnedAlertModel(model)

    @property
    def version(self) -> str:
        return self.pinned().version

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        return self.pinned().predict_proba(vectors)


def defined_service_columns(service: str) -> list[str]:
    """A feature service's model columns from the Feast definitions in code (`feature_repo/`
    applies the same objects): for a processor that reads no online store."""
    for candidate in definitions()[2]:
        if candidate.name == service:
            return feature_columns([(p.name_to_use(), [f.name for f in p.features])
                                    for p in candidate.feature_view_projections])
    raise ValueError(f"no feature service {service!r} in serving.feast_definitions")


def registry_alert_model(uri: str, *, poll_s: float) -> RegistryAlertModel:
    """The sensors join's model from `uri`, checked against `sensors_alert_v1` (whose columns
    must be the join's vector, SX, SY, FA, FI, FD bins, in order), polled every `poll_s`."""
    service = FEATURE_SERVICES["sensors"]
    columns = defined_service_columns(service)
    fields = [c.split("__", 1)[1].removesuffix("_bin") for c in columns]
    if fields != list(VECTOR_FIELDS):
        raise ModelRefused(f"feature service {service} lists {columns}, not the join's vector "
                           f"{list(VECTOR_FIELDS)}")
    watcher = ModelWatcher(uri, columns, service, poll_s=poll_s).start()
    if watcher.current is None:
        watcher.stop()
        raise ModelRefused(next(iter(watcher.refused.values()),
                                f"no sensors model to serve from {uri}"))
    return RegistryAlertModel(watcher)

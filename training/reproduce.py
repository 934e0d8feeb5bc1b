"""A registered model's training data, rebuilt from its MLflow run, checked against its digests.

    from training.reproduce import reproduce
    result = reproduce("braid-markets-direction/7")   # or "braid-markets-direction@champion"
    print("\\n".join(result.lines()))
    result.matches, result.frame                       # True, the rebuilt training set

What a run logged (`training_set.json`, its params and tags) says what to rebuild:

- **markets**: the training set as of the Delta table versions it read (`training_sets.
  training_set(record)`: time travel through the same DuckDB join), then the labelled rows;
- **sensors**: the rows from the same source: the simulator with the same parameters and seed,
  or the SKAB files (their digest must be the logged one), with the same grace.

Each rebuild is compared with the logged digests (`training.frame_digest`, canonical form): the
training set's (markets) and the labelled dataset's (both pipelines). With `refit=True` the model
is fitted again with the run's logged settings and seed, and every logged score (model,
baselines, validation, rows per part) is compared with the refit's, value for value.
A table version the offline store no longer holds (vacuumed, log cleaned up) is a
`serving.table_versions.TableVersionGone` error naming the table, the version and the retention.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from feast import FeatureStore
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.model_contract import FEATURE_SERVICES
from features.sensors.window_math import DEFAULT_GRACE_MS
from serving.settings import MlflowSettings
from serving.store import open_store
from training.frame_digest import frame_digest
from training.mlflow_logging import git_tags
from training.run import DATASET_KEYS, PreparedData, dataset_frame, fit_and_score
from training.settings import TrainingSettings

RECORD_ARTIFACT = "training_set.json"
_REFERENCE = re.compile(r"^(?:models:/)?(?P<name>[^/@\s]+)(?:/(?P<version>\d+)|@(?P<alias>\w+))$")
#: Logged metrics that a refit does not reproduce: timings, and the promotion's (a later
#: decision against whichever champion there was).
_NOT_SCORES = ("seconds_", "promotion_")


@dataclass(frozen=True)
class DigestCheck:
    """One logged digest against the rebuilt one."""

    what: str
    logged: str | None
    rebuilt: str
    rows: int | None = None

    @property
    def same(self) -> bool:
        return self.logged == self.rebuilt


@dataclass(frozen=True)
class ScoreCheck:
    """One logged metric against the refit's."""

    metric: str
    logged: float
    refit: float | None

    @property
    def same(self) -> bool:
        return self.refit is not None and self.refit == self.logged


@dataclass
class Reproduction:
    """A model version's rebuilt data (and optionally refit scores) against what its run logged."""

    model_name: str
    version: str
    run_id: str
    pipeline: str
    #: What the data was read from (tables and versions, simulator parameters, SKAB files).
    inputs: str
    digests: list[DigestCheck]
    #: The rebuilt training set (markets: the feature service's frame; sensors: the rows).
    frame: pd.DataFrame
    scores: list[ScoreCheck] = field(default_factory=list)
    logged_commit: str | None = None
    current_commit: str | None = None

    @property
    def matches(self) -> bool:
        """Every digest logged equals the rebuilt one, and every refit score the logged one."""
        return all(d.same for d in self.digests) and all(s.same for s in self.scores)

    def lines(self) -> list[str]:
        """The comparison as text, one fact a line (what `braid train reproduce` prints)."""
        out = [f"{self.model_name} v{self.version} (run {self.run_id}, {self.pipeline})",
               f"  inputs: {self.inputs}"]
        for check in self.digests:
            rows = "" if check.rows is None else f", {check.rows:,} rows"
            verdict = ("same" if check.same else
                       "NOT LOGGED (run predates digests)" if not check.logged else "DIFFERENT")
            out += [f"  {check.what}{rows}: {verdict}",
                    f"    logged  {check.logged or '-'}",
                    f"    rebuilt {check.rebuilt}"]
        if self.scores:
            differ = [s for s in self.scores if not s.same]
            out.append(f"  refit: {len(self.scores) - len(differ)} of {len(self.scores)} "
                       f"logged metrics equal" + ("" if differ else " (all)"))
            for s in self.scores:
                if s.metric.startswith("test_") or not s.same:
                    out.append(f"    {s.metric:<28} logged {s.logged:.10g}  refit "
                               f"{'-' if s.refit is None else format(s.refit, '.10g')}"
                               f"{'' if s.same else '  DIFFERENT'}")
        if self.logged_commit and self.current_commit and self.logged_commit != self.current_commit:
            out.append(f"  code: trained at commit {self.logged_commit[:12]}, this checkout is "
                       f"{self.current_commit[:12]} (a different digest may come from the code)")
        out.append("  reproduced: " + ("yes" if self.matches else "NO"))
        return out


def parse_model(reference: str) -> tuple[str, str | None, str | None]:
    """(name, version, alias) of `NAME/VERSION`, `NAME@ALIAS` or `models:/...` of either."""
    found = _REFERENCE.match(reference.strip())
    if not found:
        raise ValueError(f"model {reference!r}: give NAME/VERSION or NAME@ALIAS, "
                         "e.g. braid-markets-direction/3")
    return found["name"], found["version"], found["alias"]


def _model_version(client: MlflowClient, reference: str) -> ModelVersion:
    name, version, alias = parse_model(reference)
    try:
        if version is not None:
            return client.get_model_version(name, version)
        assert alias is not None
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        raise ValueError(f"model {reference!r} is not registered "
                         f"({str(error).splitlines()[0]})") from error


def _logged_record(client: MlflowClient, run_id: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="braid-reproduce-") as folder:
        try:
            path = client.download_artifacts(run_id, RECORD_ARTIFACT, folder)
        except (MlflowException, OSError) as error:
            raise ValueError(f"run {run_id} has no {RECORD_ARTIFACT}: it cannot be "
                             "reproduced") from error
        record: dict[str, Any] = json.loads(Path(path).read_text())
    return record


def settings_from_params(params: dict[str, str]) -> TrainingSettings:
    """The run's training settings, from its logged params (every setting is logged)."""
    return TrainingSettings.model_validate(
        {k: params[k] for k in TrainingSettings.model_fields if k in params})


def _markets(record: dict[str, Any], params: dict[str, str], store: FeatureStore
             ) -> tuple[PreparedData, pd.DataFrame, str, list[DigestCheck]]:
    from training.markets_model import prepare, service_columns
    from training.training_sets import TrainingSetRecord, training_set

    logged = TrainingSetRecord.from_dict(record)
    if logged.keys is None and params.get("pairs"):  # runs before keys were recorded
        logged = replace(logged, keys=params["pairs"].split(","))
    ts = training_set(logged, store=store)
    service = FEATURE_SERVICES["markets"]
    data = prepare(ts, service_columns(store, service), int(params["horizon"]), {})
    inputs = (", ".join(f"{path}@v{v}" for path, v in logged.table_versions.items())
              + f" ({logged.start} .. {logged.end}"
              + (f", {','.join(logged.keys)})" if logged.keys else ")"))
    checks = [DigestCheck("training set", record.get("frame_digest") or None,
                          ts.record.frame_digest, ts.record.frame_rows)]
    return data, ts.frame, inputs, checks


def _sensors(record: dict[str, Any], params: dict[str, str]
             ) -> tuple[PreparedData, pd.DataFrame, str, list[DigestCheck]]:
    from training.sensors_model import sensors_data

    source = record.get("source")
    if source not in ("simulator", "skab"):
        raise ValueError(f"sensors record has no known source ({source!r})")
    settings = settings_from_params(params)
    data = sensors_data(
        source, clients=int(record.get("clients", 0)), minutes=int(record.get("minutes", 0)),
        seed=int(record.get("seed", settings.seed)),
        skab_dir=Path(record["dir"]) if source == "skab" else None,
        grace_ms=int(record.get("grace_ms", DEFAULT_GRACE_MS)),
        gap_ms=int(params.get("gap_ms", settings.sensors_gap_ms)))
    checks = []
    if source == "skab":
        inputs = f"SKAB files in {record['dir']} ({record.get('files')} files)"
        checks.append(DigestCheck("SKAB files", record.get("files_digest"),
                                  str(data.record["files_digest"]),
                                  int(data.record["files"])))
    else:
        inputs = (f"simulator: {record.get('clients')} clients, {record.get('minutes')} "
                  f"minutes, seed {record.get('seed')}, "
                  f"{record.get('incidents_per_hour')} incidents/h")
    inputs += f", grace {data.record.get('grace_ms')} ms"
    return data, dataset_frame(data), inputs, checks


def reproduce(model: str, *, refit: bool = False, store: FeatureStore | None = None,
              profile: str = "local", repo: Path | str | None = None,
              tracking_uri: str | None = None) -> Reproduction:
    """Rebuild the training data of registered `model` (`NAME/VERSION` or `NAME@ALIAS`) from
    its MLflow run, compare digests, and with `refit` the scores (module docstring). Markets
    sets are read through `store` (default: the Feast repository `repo` under `profile`)."""
    uri = tracking_uri or MlflowSettings().resolved_tracking_uri()
    client = MlflowClient(uri, uri)
    version = _model_version(client, model)
    if not version.run_id:
        raise ValueError(f"{version.name} v{version.version} has no MLflow run")
    run = client.get_run(version.run_id)
    params, tags = run.data.params, run.data.tags
    record = _logged_record(client, version.run_id)
    pipeline = tags.get("pipeline", "")
    if pipeline == "markets":
        store = store or (open_store(profile, repo) if repo else open_store(profile))
        data, frame, inputs, checks = _markets(record, params, store)
    elif pipeline == "sensors":
        data, frame, inputs, checks = _sensors(record, params)
    else:
        raise ValueError(f"run {version.run_id} has no known pipeline tag ({pipeline!r})")
    labelled = dataset_frame(data)
    checks.append(DigestCheck("labelled dataset", record.get("dataset_digest") or None,
                              frame_digest(labelled, DATASET_KEYS), len(labelled)))
    scores: list[ScoreCheck] = []
    if refit:
        refitted = fit_and_score(data, settings_from_params(params)).metrics
        scores = [ScoreCheck(name, value, refitted.get(name))
                  for name, value in sorted(run.data.metrics.items())
                  if not name.startswith(_NOT_SCORES)]
    return Reproduction(
        model_name=version.name, version=str(version.version), run_id=version.run_id,
        pipeline=pipeline, inputs=inputs, digests=checks, frame=frame, scores=scores,
        logged_commit=tags.get("git_commit"), current_commit=git_tags().get("git_commit"))

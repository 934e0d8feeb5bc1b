"""The `backfill` flow's `dataproc_ephemeral` parameter runs the job's own arguments on an
ephemeral cluster (the run itself is `batch.dataproc.run_ephemeral`, tested on its own)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

import batch.dataproc as dataproc
from batch.backfill_trades import job_args
from orchestration.flows.backfill import EphemeralDataproc, run_on_ephemeral_dataproc


def test_the_flow_task_runs_markets_then_sensors_on_an_ephemeral_cluster(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(settings: dataproc.DataprocSettings,
                 jobs: list[dataproc.BackfillJob]) -> dataproc.EphemeralRun:
        seen["settings"], seen["jobs"] = settings, jobs
        run = dataproc.EphemeralRun("braid-backfill-x", dataproc.StagedCode("gs://b/j/braid/x"))
        run.jobs, run.deleted = {"m": "DONE", "s": "DONE"}, True
        return run

    monkeypatch.setattr(dataproc, "run_ephemeral", fake_run)
    args = job_args(inputs=["gs://b/trades/a.csv"], start=date(2018, 5, 8), end=date(2018, 5, 9),
                    pairs=["XBT/USD"], output="gs://b/offline", progress=False)
    result = run_on_ephemeral_dataproc.fn(args, date(2018, 5, 8), date(2018, 5, 9),
                                          EphemeralDataproc(project="p", staging="gs://b/j",
                                                            workers=4,
                                                            sensors_archive="gs://b/archive"))
    assert result == {"cluster": "braid-backfill-x", "jobs": {"m": "DONE", "s": "DONE"},
                      "deleted": True}
    settings = seen["settings"]
    assert (settings.project, settings.staging, settings.workers) == ("p", "gs://b/j", 4)
    markets, sensors = seen["jobs"]
    assert markets.kind == "markets" and list(markets.args) == args
    assert sensors.kind == "sensors" and list(sensors.args) == [
        "--input", "gs://b/archive", "--output", "gs://b/offline/sensor_features",
        "--start", "2018-05-08", "--end", "2018-05-09"]

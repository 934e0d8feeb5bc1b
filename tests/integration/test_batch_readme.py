"""`batch/README.md`'s first command runs exactly as written (issue 25: it used to stop with
MissingConnectorError unless flags explained 120 lines further down were added)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from batch import delta_log
from batch.spark_conf import jars_dir, write_properties_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


def readme_first_command() -> str:
    """The first command of the README's first bash block, its continuation lines joined."""
    text = (REPO / "batch" / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None, "batch/README.md has no bash block"
    command: list[str] = []
    for line in block.group(1).splitlines():
        command.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return " ".join(command)


def test_the_readme_first_command_runs_as_written(tmp_path: Path) -> None:
    command = readme_first_command()
    assert command.startswith("spark-submit --properties-file var/jars/spark.properties "
                              "batch/backfill_trades.py ")
    if not (SHARED / "data" / "kraken-trades").is_dir():
        pytest.skip(f"real data {SHARED / 'data'} is absent")
    write_properties_file()  # what scripts/setup.sh does once the jars are fetched
    # A checkout-shaped folder, so the command's relative paths (var/jars, ../shared/data and
    # its output var/offline) resolve as in the checkout without writing into it.
    checkout = tmp_path / "braid"
    (checkout / "var").mkdir(parents=True)
    for package in ("batch", "features"):
        (checkout / package).symlink_to(REPO / package)
    (checkout / "var" / "jars").symlink_to(jars_dir())
    (tmp_path / "shared").symlink_to(SHARED)
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(checkout),  # Braid importable, as `pip install -e .` makes it
           "PYSPARK_PYTHON": sys.executable}
    env.pop("MASTER", None)
    done = subprocess.run(["bash", "-c", command], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    candles = delta_log.read_table(str(checkout / "var" / "offline" / "candles"))
    assert summary["table_versions"] == {"candles": 0, "indicators": 0, "rejected_trades": 0}
    assert summary["candles_written"] == candles.num_rows > 10_000
    assert set(candles["pair"].to_pylist()) == {"XBT/USD", "ETH/USD"}
    assert sorted(set(candles["window_ms"].to_pylist())) == [60_000, 3_600_000, 86_400_000]

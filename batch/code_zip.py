"""Braid's job code as one zip (`features/` and `batch/`), shipped to a cluster's executors.

A job's tasks unpickle functions of `batch.*` and `features.*`: the executors need those
packages. Dataproc gets the zip as the job's `python_file_uris` (`batch.dataproc`); on a
standalone cluster `batch.spark_session` adds it with `SparkContext.addPyFile`, built from the
code the driver runs. A driver already importing Braid from a zip (Dataproc) ships nothing.
"""

from __future__ import annotations

import functools
import os
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("features", "batch")
ZIP_NAME = "braid_batch.zip"


def build_code_zip(destination: str | os.PathLike[str]) -> Path:
    """A zip of Braid's `features/` and `batch/` packages (Python files), for `--py-files`."""
    out = Path(destination)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for package in CODE_PACKAGES:
            for path in sorted((REPO_ROOT / package).rglob("*.py")):
                if "__pycache__" not in path.parts:
                    archive.write(path, path.relative_to(REPO_ROOT).as_posix())
    return out


def running_from_zip() -> bool:
    """Whether this interpreter imports Braid from a zip (it was shipped to it)."""
    return ".zip" in Path(__file__).as_posix().split("/batch/")[0]


@functools.cache
def code_zip_for_this_process() -> Path:
    """The zip of the code this process runs, built once per process in a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="braid-code-"))
    return build_code_zip(folder / ZIP_NAME)

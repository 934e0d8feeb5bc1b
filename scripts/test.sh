#!/usr/bin/env bash
# Install what is needed, then run the whole test suite (unit + integration against real,
# locally started services) on two pytest-xdist workers, each with services of its own (see
# tests/conftest.py). Extra arguments go to pytest; BRAID_TEST_WORKERS=0 runs it in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PYSPARK_PYTHON="$PWD/.venv/bin/python"
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=30 \
  -n "${BRAID_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"

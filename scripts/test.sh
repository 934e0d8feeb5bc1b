#!/usr/bin/env bash
# Install what is needed, then run the whole test suite (unit + integration against real,
# locally started services). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PYSPARK_PYTHON="$PWD/.venv/bin/python"
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=30 "$@"

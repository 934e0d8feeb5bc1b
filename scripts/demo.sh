#!/usr/bin/env bash
# Install what is needed, then run the demo on the embedded defaults (no data, no network).
# Extra arguments go to `braid demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/braid demo "$@"

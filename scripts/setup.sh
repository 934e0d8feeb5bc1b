#!/usr/bin/env bash
# Install everything Braid needs (idempotent): system packages (Java 17, Maven, Redis, and
# Chromium for the browser test of the UIs) with
# apt-get when missing and running as root, Python packages into ./.venv, and the Java jars
# (Apache Kafka, Spark's Delta and Kafka connectors, Hadoop's GCS connector) from Maven Central
# into var/jars.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package providing it
declare -A system_packages=(
  [java]=openjdk-17-jre-headless
  [mvn]=maven
  [redis-server]=redis-server
  [chromium]=chromium
)
missing=()
for cmd in java mvn redis-server chromium; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${system_packages[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
  else
    echo "missing system packages: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python=$candidate; break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.braid-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  .venv/bin/pip check
  echo "$want" > "$stamp"
fi
# Java dependencies from Maven Central (nothing is downloaded when already present), then the
# properties file spark-submit takes beside them (var/jars/spark.properties: batch/spark_conf.py)
.venv/bin/python -m infra.jars
.venv/bin/python -m batch.spark_conf

echo "Braid is installed in .venv (activate with: source .venv/bin/activate)"

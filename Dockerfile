# One image for every Braid process: any `braid` command (processors, the API, the online sink,
# the flows worker, backfills), `feast`, `prefect`, `mlflow` and `spark-submit`.
# Build (tags with the version and the date; see infra/README.md "Containers"):
#   infra/scripts/build_image.sh            # docker; ENGINE=podman for podman
# or by hand from the repository root:
#   docker build -t braid:0.1.0-$(date -u +%Y%m%d) --build-arg VERSION=0.1.0 \
#     --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) .
# BASE_IMAGE: any Debian bookworm with Python 3.11 (`python3`, its `venv` module) where public
# images are out of reach, e.g. one made with mmdebstrap (infra/scripts/podman_smoke.sh).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/braid/venv \
    PATH=/opt/braid/venv/bin:$PATH \
    BRAID_JARS_DIR=/opt/braid/jars
# Java 17: Spark's JVM (local backfills, spark-submit), and Maven's in the build stage.
# Debian's versions move with its point releases: the release is pinned by BASE_IMAGE.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless ca-certificates \
    && rm -rf /var/lib/apt/lists/*

FROM base AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends maven \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv "$VIRTUAL_ENV"
WORKDIR /app
# The pinned dependencies first (pyproject.toml's list, TA-Lib as its binary wheel): this layer
# is rebuilt only when pyproject.toml changes, not on every code change.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY features/ features/
COPY streaming/ streaming/
COPY batch/ batch/
COPY serving/ serving/
COPY training/ training/
COPY orchestration/ orchestration/
COPY infra/ infra/
COPY cli/ cli/
COPY feature_repo/ feature_repo/
# Editable: the code stays at /app, so serving.settings.PROJECT_ROOT is /app and
# feature_repo/ and relative paths (var/offline, var/feast) resolve there, as in a checkout.
# Spark's connector jars (delta-spark, the Kafka source) and Hadoop's GCS connector (gs://
# offline roots) from Maven Central into $BRAID_JARS_DIR, and the spark-submit properties file
# beside them ($BRAID_JARS_DIR/spark.properties, batch/spark_conf.py).
RUN pip install --no-deps -e . \
    && python -m compileall -q features streaming batch serving training orchestration infra cli \
    && python -m infra.jars spark gcs \
    && python -m batch.spark_conf

FROM base AS runtime
RUN groupadd --gid 10001 braid \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin braid
COPY --from=build /opt/braid /opt/braid
# the code stays root-owned (read-only for the user); only var/ is the user's
COPY --from=build /app /app
# var/: the Feast registry and online SQLite, offline tables, archive, MLflow's and Prefect's
# state; a volume in compose, a PersistentVolumeClaim or emptyDir in Kubernetes.
RUN mkdir -p /app/var/feast /app/var/offline /app/var/archive /app/var/trades /app/var/mlflow \
      /app/var/prefect \
    && chown -R 10001:10001 /app/var
# Logs as JSON lines (structlog), one event a line, for the cluster's log collector.
ENV BRAID_LOG_JSON=1
WORKDIR /app
USER 10001:10001
# Last: they change on every build, the layers above stay cached.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="braid" \
      org.opencontainers.image.description="Braid: a batch-plus-stream feature platform for real-time ML" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.version="${VERSION}"
# The stream processors serve no HTTP: by default a container is healthy while its broker answers
# (KAFKA_* settings). compose.yaml and the Kubernetes probes check the HTTP services' endpoints.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "infra.probe", "kafka"]
CMD ["braid", "--help"]

#!/usr/bin/env bash
# Manual check of the image where no Docker engine runs and public image registries are out of
# reach (not part of CI: it builds the whole image, ~20+ minutes on 2 cores):
#   1. a Debian bookworm base (python3, venv) made with mmdebstrap from this host's apt sources,
#      imported into podman;
#   2. the Dockerfile built on it through infra/scripts/build_image.sh (BASE_IMAGE);
#   3. in the image: the user, the labels, `braid --help`, `feast version`, `spark-submit
#      --version`, TA-Lib; then `feast apply` and `braid api` against a broker of the local stack
#      (braid up --services broker, stopped by PID at the end): GET /health, the HEALTHCHECK.
# Needs root, podman, runc and mmdebstrap (apt-get install podman runc mmdebstrap). Podman here
# needs `--runtime runc` (crun fails on hybrid cgroups) and nofile/nproc limits under 20,000;
# bridge networks have no DNS, so everything uses the host's network.
#   infra/scripts/podman_smoke.sh 2>&1 | tee var/podman_smoke.log
set -euo pipefail
cd "$(dirname "$0")/../.."
podman=(podman --runtime runc)
limits=(--ulimit nofile=16384:16384 --ulimit nproc=4096:4096)
base=localhost/braid-base:bookworm
work=$(mktemp -d)
stack_dir="$work/stack"
broker_port=${SMOKE_BROKER_PORT:-29092}
api_port=${SMOKE_API_PORT:-28000}
container=braid-smoke-api
step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
cleanup() {
  "${podman[@]}" rm -f "$container" >/dev/null 2>&1 || true
  if [ -d "$stack_dir" ]; then .venv/bin/python -m cli.main down --state-dir "$stack_dir" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
if ! "${podman[@]}" image exists "$base"; then
  step "base image: mmdebstrap bookworm from $sources"
  # the site's certificate authorities (this host's extra ones, e.g. a TLS-inspecting egress)
  # and pip pointed at the system store, as a site's own base image would carry them
  mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    --customize-hook='cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null || true' \
    --customize-hook='chroot "$1" update-ca-certificates' \
    --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"' \
    bookworm "$work/base.tar" "$sources"
  "${podman[@]}" import "$work/base.tar" "$base"
fi

step "build (infra/scripts/build_image.sh, BASE_IMAGE=$base)"
start=$(date +%s)
ENGINE="${podman[*]}" IMAGE=localhost/braid infra/scripts/build_image.sh --format docker \
  --network host "${limits[@]}" --build-arg BASE_IMAGE="$base" | tee "$work/build.log" \
  | grep -E "^(STEP|COMMIT|Successfully)" || true
tag=$(tail -1 "$work/build.log")
echo "built $tag in $(( $(date +%s) - start )) s"
"${podman[@]}" image inspect "$tag" --format 'size {{.Size}} bytes; user {{.Config.User}}'
"${podman[@]}" image inspect "$tag" --format '{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}
{{end}}' | grep org.opencontainers
"${podman[@]}" image inspect "$tag" --format 'healthcheck {{.Config.Healthcheck.Test}}'

# one-off commands: no health-check timer (this host has no systemd to run one)
run() { "${podman[@]}" run --rm --network host --health-interval=disable "${limits[@]}" "$tag" "$@"; }
step "commands in the image"
run id
help=$(run braid --help); head -40 <<< "$help"
run feast version
spark=$(run spark-submit --version 2>&1); grep -m1 "version" <<< "$spark"
java=$(run java -version 2>&1); grep -m1 "openjdk version" <<< "$java"
run python -c "import talib, numpy; print('TA-Lib', talib.__ta_version__.decode(), talib.RSI(numpy.arange(30.0))[-1])"

step "a broker of the local stack on 127.0.0.1:$broker_port"
BRAID_STACK_BROKER_PORT=$broker_port BRAID_STACK_CONTROLLER_PORT=$((broker_port + 1)) \
  .venv/bin/python -m cli.main up --services broker --state-dir "$stack_dir" | tail -3

step "feast apply and braid api in the image"
"${podman[@]}" run -d --name "$container" --network host --health-interval=disable "${limits[@]}" \
  -e KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$broker_port" -e BRAID_API_PORT="$api_port" \
  -e BRAID_MLFLOW_TRACKING_URI=http://127.0.0.1:9 -e MLFLOW_HTTP_REQUEST_MAX_RETRIES=0 \
  "$tag" sh -c 'feast -c /app/feature_repo apply && exec braid api' >/dev/null
for _ in $(seq 1 90); do
  if curl -fsS "http://127.0.0.1:$api_port/health" 2>/dev/null; then echo; break; fi
  if [ "$("${podman[@]}" inspect -f '{{.State.Running}}' "$container")" != true ]; then break; fi
  sleep 5
done
"${podman[@]}" logs "$container" 2>&1 | tail -5
curl -fsS "http://127.0.0.1:$api_port/health" >/dev/null
echo "GET /health: 200"
"${podman[@]}" healthcheck run "$container" && echo "HEALTHCHECK (python -m infra.probe kafka): healthy"
step "done"

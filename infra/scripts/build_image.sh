#!/usr/bin/env bash
# Build Braid's image from the repository root (the build context; Dockerfile and .dockerignore
# live there), tagged <image>:<version>-<UTC date> and <image>:latest, with the Open Containers
# labels (source, revision, created, version) filled in. Prints the dated tag last.
#   infra/scripts/build_image.sh                                  # docker, image "braid"
#   ENGINE=podman IMAGE=registry.example/braid infra/scripts/build_image.sh --build-arg BASE_IMAGE=...
# Extra arguments go to `<engine> build`.
set -euo pipefail
cd "$(dirname "$0")/../.."
read -ra engine <<< "${ENGINE:-docker}"  # e.g. ENGINE="podman --runtime runc"
image=${IMAGE:-braid}
version=$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
tag="$image:$version-$(date -u +%Y%m%d)"
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# the remote's URL without any user:token@ part
source=$(git remote get-url origin 2>/dev/null | sed -E 's#//[^/@]*@#//#' || true)
"${engine[@]}" build "$@" \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$revision" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --build-arg SOURCE="${source:-unknown}" \
  -t "$tag" -t "$image:latest" .
echo "$tag"

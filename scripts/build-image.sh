#!/usr/bin/env bash
# Builds the `getlood` container image on a machine without registry access: a local Debian
# bookworm base (debootstrap, once), the release `getlood` binary from the host (the one binary
# every service runs as `getlood <service>`), then deploy/Dockerfile.prebuilt. Needs a running
# Docker engine (DOCKER_HOST) and root for debootstrap. Prints the image size.
#
#   scripts/build-image.sh [TAG]      (default getlood:dev; CARGO_TARGET_DIR honoured)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=${1:-getlood:dev}
BASE=local/bookworm-minbase
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# One binary for all six services (`getlood gateway`, `getlood workflow migrate`, ...).
BINS=(getlood)

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  rootfs=$(mktemp -d)
  echo "build-image: creating $BASE with debootstrap"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$rootfs" -c . | docker import - "$BASE" >/dev/null
  rm -rf "$rootfs"
fi

(cd "$ROOT" && cargo build --release --bin getlood)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/bin" "$ctx/web"
for b in "${BINS[@]}"; do install -m 0755 "$TARGET/release/$b" "$ctx/bin/$b"; done
# The web desktop the gateway serves at / (app.web_dir): built when web/ exists.
if [ -f "$ROOT/web/package.json" ]; then
  (cd "$ROOT" && make -s web-build)
  cp -r "$ROOT/web/dist/." "$ctx/web/"
fi
cp "$ROOT/deploy/Dockerfile.prebuilt" "$ctx/Dockerfile"
docker build --network host -q -t "$TAG" --build-arg BASE_IMAGE="$BASE" \
  --build-arg REVISION="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" "$ctx" >/dev/null
size=$(docker image inspect "$TAG" --format '{{.Size}}')
echo "build-image: $TAG $(( size / 1024 / 1024 )) MB ($(du -ch "$ctx"/bin/* | tail -1 | cut -f1) binary)"

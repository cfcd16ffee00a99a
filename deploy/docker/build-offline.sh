#!/usr/bin/env bash
# Builds the setowire-node image, tagged setowire-node:latest, from the repository's
# Dockerfile without pulling any image: for air-gapped hosts and for CI, where no registry
# is reachable.
#
#   deploy/docker/build-offline.sh [EXTRA DOCKER BUILD ARGS...]
#
# * The Debian base comes from debootstrap (deploy/docker/debian-base.sh), made once and
#   then reused from the local image store.
# * The binary is built on the host with the host's Rust toolchain and crates
#   (`cargo build --release --locked`), so a second run only relinks what changed; its
#   glibc is the host's, and the base image is the host's Debian release.
# * `docker build` then runs the Dockerfile with BINARY=prebuilt: the same root filesystem
#   and final stage as a build from source.
#
# Environment: DOCKER (default /usr/bin/docker, Debian's client: BuildKit without buildx),
# IMAGE (default setowire-node:latest), CARGO_TARGET_DIR, and those of debian-base.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."

DOCKER=${DOCKER:-/usr/bin/docker}
IMAGE=${IMAGE:-setowire-node:latest}
export DOCKER

base=$(deploy/docker/debian-base.sh)

# The same profile settings as the Dockerfile's build from source.
CARGO_PROFILE_RELEASE_STRIP=debuginfo cargo build --release --locked --bin setowire-node
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p target/docker
# Copied, not linked: the build context must hold the file itself.
cp "$target_dir/release/setowire-node" target/docker/setowire-node.tmp
mv -f target/docker/setowire-node.tmp target/docker/setowire-node

# RUST_IMAGE is never built from (BuildKit skips the unused stage); pointing it at the local
# base keeps BuildKit from asking a registry about it.
DOCKER_BUILDKIT=1 "$DOCKER" build \
  --build-arg BINARY=prebuilt \
  --build-arg "DEBIAN_IMAGE=$base" \
  --build-arg "RUST_IMAGE=$base" \
  --tag "$IMAGE" \
  "$@" .

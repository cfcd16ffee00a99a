#!/usr/bin/env bash
# Builds a Prometheus image from Debian's `prometheus` package on the local Debian base
# (deploy/docker/debian-base.sh), without pulling any image, for deploy/docker-compose.yml
# on hosts without a registry:
#
#   deploy/docker/build-prometheus-offline.sh
#   PROMETHEUS_IMAGE=setowire-prometheus:debian docker-compose -f deploy/docker-compose.yml up -d
#
# Environment: DOCKER (default /usr/bin/docker), IMAGE (default setowire-prometheus:debian),
# and those of debian-base.sh.
set -euo pipefail
cd "$(dirname "$0")"

DOCKER=${DOCKER:-/usr/bin/docker}
IMAGE=${IMAGE:-setowire-prometheus:debian}
export DOCKER

base=$(./debian-base.sh)
# The Dockerfile is the whole context.
DOCKER_BUILDKIT=1 "$DOCKER" build --build-arg "DEBIAN_IMAGE=$base" --tag "$IMAGE" - <prometheus.Dockerfile

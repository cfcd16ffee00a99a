#!/usr/bin/env bash
# Makes the Debian base image the offline builds start from, without pulling anything:
# `debootstrap --variant=minbase` of the host's Debian release into a temporary directory,
# turned into an image by `docker import`. An image already there is kept (it is the cache
# between runs on one machine), so only the first run pays for debootstrap.
#
# Prints the image's tag (setowire-debian:<release>) on stdout; progress goes to stderr.
#
# Environment:
#   DOCKER          the docker client (default: Debian's /usr/bin/docker)
#   DEBIAN_SUITE    the release (default: VERSION_CODENAME of /etc/os-release, so the
#                   image's glibc is the host's and a binary built here runs in it)
#   DEBIAN_MIRROR   the archive (default: http://deb.debian.org/debian)
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
if [ -z "${DEBIAN_SUITE:-}" ]; then
  DEBIAN_SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
fi
[ -n "$DEBIAN_SUITE" ] || { echo "debian-base.sh: set DEBIAN_SUITE (no VERSION_CODENAME in /etc/os-release)" >&2; exit 1; }
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
tag="setowire-debian:$DEBIAN_SUITE"

if "$DOCKER" image inspect "$tag" >/dev/null 2>&1; then
  echo "debian-base.sh: $tag is there, reused" >&2
  echo "$tag"
  exit 0
fi

command -v debootstrap >/dev/null || { echo "debian-base.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
root=$(mktemp -d /var/tmp/setowire-debootstrap.XXXXXX)
log=$(mktemp /var/tmp/setowire-debootstrap-log.XXXXXX)
trap 'rm -rf "$root" "$log"' EXIT
echo "debian-base.sh: debootstrap $DEBIAN_SUITE from $DEBIAN_MIRROR (about a minute, once)" >&2
debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >"$log" 2>&1 || {
  tail -n 30 "$log" >&2
  exit 1
}
# apt's package lists and the downloaded .debs are not part of a base image.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar --numeric-owner -C "$root" -c . |
  "$DOCKER" import --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "$tag"

#!/bin/sh
# Cuts a minimal root filesystem out of the Debian system it runs in (the Dockerfile's
# `rootfs` stage): the files of the given installed packages, an unprivileged user and the
# node's state directory. The final image is this tree and the binary, nothing else.
#
# Usage: make-rootfs.sh DEST UID PACKAGE...
#
# Debian has merged /usr: /lib is a link to usr/lib, while packages list their files under
# either. Each file is copied to its real location, and the top-level links are recreated,
# so that the tree resolves every path the way the system it was cut from does.
set -eu

dest=$1
uid=$2
shift 2

mkdir -p "$dest"
for top in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$top" ]; then
    cp -P "/$top" "$dest/$top"
  fi
done

dpkg-query -L "$@" | sort -u | while IFS= read -r path; do
  # Directories come with their files; documentation is not needed to run (copyright
  # notices stay).
  case $path in
    /usr/share/doc/*/copyright) ;;
    /usr/share/doc/* | /usr/share/lintian/* | /usr/share/man/* | /usr/share/gcc/*) continue ;;
  esac
  if [ -d "$path" ] && [ ! -L "$path" ]; then
    continue
  fi
  [ -e "$path" ] || [ -L "$path" ] || continue
  real="$(realpath "$(dirname "$path")")/$(basename "$path")"
  mkdir -p "$dest$(dirname "$real")"
  cp -P -p "$real" "$dest$real"
done

mkdir -p "$dest/etc" "$dest/usr/lib" "$dest/tmp" "$dest/var/lib/setowire-node"
chmod 1777 "$dest/tmp"
cp -p /usr/lib/os-release "$dest/usr/lib/os-release"
ln -sf ../usr/lib/os-release "$dest/etc/os-release"
cat >"$dest/etc/passwd" <<EOF
root:x:0:0:root:/root:/usr/sbin/nologin
setowire:x:$uid:$uid:setowire-node:/var/lib/setowire-node:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$dest/etc/group" <<EOF
root:x:0:
setowire:x:$uid:
nogroup:x:65534:
EOF
# Bootstrap names are resolved through glibc: /etc/hosts (Docker writes it), then DNS.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$dest/etc/nsswitch.conf"
# The node creates its state directory with mode 0700 when missing; made here so that a
# fresh volume mounted on it starts owned by the node's user.
chown "$uid:$uid" "$dest/var/lib/setowire-node"
chmod 0700 "$dest/var/lib/setowire-node"

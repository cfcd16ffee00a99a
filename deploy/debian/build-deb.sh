#!/usr/bin/env bash
# Builds the Debian package into target/debian/: the release binary, stripped, the systemd
# unit and the default configuration (Cargo.toml's [package.metadata.deb]). Installs
# cargo-deb from crates.io when it is missing. Prints the package's path.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked --version '^3' >&2
cargo build --release --locked --bin setowire-node >&2
cargo deb --no-build --locked --strip -p setowire-node >&2
ls -t target/debian/setowire-node_*.deb | head -n 1

#!/usr/bin/env bash
# The whole test suite, from a fresh clone: formatting, module layering, lints,
# unit/property/integration tests, the interop tests against py-setowire 0.1.0 (the tests
# create their own Python venv from PyPI under target/), and one quick pass over every
# benchmark; then a short run of every fuzz target (fuzz/, on a nightly toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
# The modules of the node and core crates use each other without cycles, at every level.
python3 scripts/module-deps.py
cargo clippy --workspace --all-targets -- -D warnings
# The container tests (tests/container.rs, tests/compose.rs) run the image this builds,
# offline: a Debian base from debootstrap (kept between runs) and the release binary.
./deploy/docker/build-offline.sh --quiet
# The Debian package tests/deployment.rs installs in a Debian container (the same release
# binary, so this takes seconds; cargo-deb is installed from crates.io when missing).
./deploy/debian/build-deb.sh >/dev/null
cargo test --workspace --lib --bins --tests
# Each criterion benchmark once, as a smoke test (criterion refuses libtest's flags).
cargo test --workspace --benches
# Every fuzz target for 20 s from its seed corpus: fails on any crash.
./scripts/fuzz.sh 20

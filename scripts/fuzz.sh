#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time (SECONDS_PER_TARGET, default 20) and
# fails on the first crash, leak or timeout; the input that caused it is kept in
# fuzz/artifacts/<target>/. Each target starts from a copy of its seed corpus in
# fuzz/corpus/<target>/, so what a run discovers never grows the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
# cargo-fuzz drives libFuzzer and the sanitizers, which need a nightly toolchain.
toolchain=nightly

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo "+$toolchain" fuzz build
for target in $(cargo "+$toolchain" fuzz list); do
    cp -r "fuzz/corpus/$target" "$work/$target"
    echo "fuzz: $target for ${seconds}s"
    cargo "+$toolchain" fuzz run "$target" "$work/$target" -- \
        -max_total_time="$seconds" -timeout=30 -print_final_stats=1
done

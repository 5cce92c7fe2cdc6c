#!/usr/bin/env bash
# Builds index2ip static and dynamic, then measures it side by side with the reference plugins and writes
# BENCHMARKS.md. Run as root for the attachment cases.
# Usage: scripts/bench.sh [ITERATIONS [BENCH OPTIONS...]] (default 300; 1 = smoke), e.g. `scripts/bench.sh 300 --only shim`.
# INDEX2IP_ORIGINAL=PATH adds the original Go index2ip (which the Go module proxy refuses) to the IPAM tables.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
iterations=${1:-300}
# A partial run (options after ITERATIONS, such as --only) prints its report instead of replacing BENCHMARKS.md.
if [ $# -gt 1 ]; then out=${BENCH_OUT:-}; else out=${BENCH_OUT:-BENCHMARKS.md}; fi

echo "==> building (release): index2ip dynamic, cni-shim, netlab, the harness"
cargo build --release --quiet -p index2ip -p cni-shim -p bench -p netlab
# The lab on the real control plane runs the upstream peers (scripts/upstream.sh); without them it is skipped.
UPSTREAM_BIN=${UPSTREAM_BIN:-$(scripts/upstream.sh --bin-dir 2>/dev/null || true)}
[ -n "$UPSTREAM_BIN" ] && export UPSTREAM_BIN

# Static: musl where the target is installed (or can be), else glibc with crt-static.
musl=x86_64-unknown-linux-musl
if rustup target list --installed 2>/dev/null | grep -qx "$musl" || rustup target add "$musl" >/dev/null 2>&1; then
    echo "==> building static binaries (musl)"
    cargo build --release --quiet --target "$musl" -p index2ip -p bench -p cni-shim --bin index2ip --bin floor --bin cni-shim --bin cni-shim-passthrough
    static_dir=target/$musl/release
else
    echo "==> building static binaries (glibc, crt-static): the musl target is not available"
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet --target x86_64-unknown-linux-gnu \
        --target-dir target/static-glibc -p index2ip -p bench -p cni-shim --bin index2ip --bin floor --bin cni-shim --bin cni-shim-passthrough
    static_dir=target/static-glibc/x86_64-unknown-linux-gnu/release
fi

echo "==> building the C floor (crates/bench/c/floor.c)"
floor_c=target/bench/floor-c
mkdir -p target/bench
cc -O2 -static -nostdlib -fno-pie -no-pie -o "$floor_c" crates/bench/c/floor.c
# The original Go index2ip, where a build of it is named: the Go module proxy refuses its module.
original=()
if [ -n "${INDEX2IP_ORIGINAL:-}" ]; then
    original=(--bin index2ip-original="$INDEX2IP_ORIGINAL")
else
    echo "==> the original index2ip is not measured: set INDEX2IP_ORIGINAL to a build of it"
fi

echo "==> measuring, $iterations calls per case"
target/release/bench --iterations "$iterations" ${out:+--out "$out"} --notes crates/bench/NOTES.md \
    --bin floor-c="$floor_c" \
    --bin floor="$static_dir/floor" \
    --bin index2ip-static="$static_dir/index2ip" \
    --bin index2ip-dynamic=target/release/index2ip \
    --bin cni-shim="$static_dir/cni-shim" \
    --bin netlab=target/release/netlab "${original[@]}" "${@:2}"

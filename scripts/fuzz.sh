#!/usr/bin/env bash
# A short coverage-guided fuzz run of index2ip's two input parsers (libFuzzer through cargo-fuzz), from the seed
# corpus in crates/index2ip/fuzz/corpus. Usage: scripts/fuzz.sh [SECONDS PER TARGET] (default 30).
# Needs a nightly toolchain (sanitizers); installs cargo-fuzz when missing. New corpus entries stay in a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
seconds=${1:-30}

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "SKIPPED fuzz: no nightly toolchain on this machine (cargo-fuzz needs one for its sanitizers)" >&2
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install --quiet --locked cargo-fuzz
fi

# The node file the seed configs name, so that ADD and CHECK reach the arithmetic.
node=/tmp/index2ip-fuzz
work=$(mktemp -d)
trap 'rm -rf "$node" "$work"' EXIT
mkdir -p "$node"
echo "epoxy.ipv4=192.0.2.9/26,192.0.2.1,198.51.100.53, epoxy.ipv6=2001:db8:1::9/64,2001:db8:1::1,," >"$node/cmdline"

cd crates/index2ip/fuzz
for target in stdin_config cmdline; do
    echo "==> fuzzing $target for ${seconds}s"
    mkdir -p "$work/$target"
    # The checked-in seeds are read, new inputs go to the temp dir: the repository is not written.
    status=0
    cargo +nightly fuzz run "$target" "$work/$target" corpus/"$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$work/$target.log" 2>&1 || status=$?
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)|Done [0-9]+ runs" "$work/$target.log" | sed 's/^/    /' || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$work/$target.log" >&2
        echo "fuzz: $target failed (a crash leaves its input in crates/index2ip/fuzz/artifacts/$target)" >&2
        exit 1
    fi
done
echo "==> fuzz: no crash"

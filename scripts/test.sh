#!/usr/bin/env bash
# Installs what the tests need, then runs every check CI runs: formatting, lints, and the whole test suite.
# Run as root: the network tests create their own namespaces (and fail under CI=true when they cannot).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "upstream peers: the real control plane, multus, flannel and cnitool, pinned (a warm cache builds nothing)"
# Exit 3 means the module proxy refused a module: the tests that need it then fail loudly under CI=true.
scripts/upstream.sh
UPSTREAM_BIN=$(scripts/upstream.sh --bin-dir)
export UPSTREAM_BIN

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo clippy, cni-shim's portable spawn (the std::process path other targets build)"
cargo clippy -p cni-shim --features portable-spawn --all-targets --quiet -- -D warnings

step "crate layers: no dependency ARCHITECTURE.md forbids"
scripts/layers.sh

step "cargo doc: every crate's docs build without a warning"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --quiet 2>&1 | tee "$log"
grep -q '^test result: ok' "$log" || { echo "no test ran" >&2; exit 1; }

step "manifests: kustomize render, strict schema validation, netlab gen --check, netlab lint"
cargo build --quiet -p netlab
NETLAB=target/debug/netlab scripts/validate-k8s.sh

step "supply chain: every dependency with its licences; cargo deny check licenses bans (offline)"
scripts/deny.sh

step "the lab killed during up at 23 points, each fully removed by down"
scripts/churn.sh killed

step "fuzz: index2ip's stdin and command-line parsers, 20 s each from the seed corpus"
scripts/fuzz.sh 20

step "benchmark smoke: one call per case, so the benchmark command does not rot (figures discarded)"
smoke=$(mktemp)
trap 'rm -f "$log" "$smoke"' EXIT
BENCH_OUT="$smoke" scripts/bench.sh 1 >/dev/null
grep -q '^## Full attachment' "$smoke"

step "all checks passed"

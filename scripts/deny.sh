#!/usr/bin/env bash
# Supply chain, offline: lists every dependency with its licence, then checks the licences and bans of deny.toml
# (permissive licences only, no crate in two versions without a written reason) for the workspace and for the fuzz
# targets' own workspace. The advisory check needs a network database and is not run here.
# Installs cargo-deny when missing (about 9 minutes of compiling on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

if ! cargo deny --version >/dev/null 2>&1; then
    echo "==> installing cargo-deny"
    cargo install --quiet --locked cargo-deny
fi
# cargo-deny reads every package's manifest, including those of platforms we do not build for: fetch them once
# (a no-op when they are in the local cache), then work offline.
cargo fetch --quiet --locked
(cd crates/index2ip/fuzz && cargo fetch --quiet --locked)

echo "==> dependencies and their licences"
cargo deny --offline list --layout crate
echo "==> cargo deny check licenses bans"
cargo deny --offline check licenses bans
echo "==> the same for the fuzz targets"
cargo deny --offline --manifest-path crates/index2ip/fuzz/Cargo.toml --config deny.toml check licenses bans

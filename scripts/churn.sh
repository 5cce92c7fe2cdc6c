#!/usr/bin/env bash
# Churn, too long for the test suite: 10 000 sequential calls through cni-shim (every record intact, the size bound
# held after each call), then 500 pods added and deleted through the real chain in a one-node lab (root: nothing
# leaked, no address handed out twice, DEL good with multus's stripped config), then the default lab killed (SIGKILL)
# at 23 points during `up`, each fully removed by `down` (root). Each part prints its own figures.
# Usage: scripts/churn.sh [shim|chain|killed] (default all three).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
which=${1:-all}

# The lab finds index2ip beside netlab; the shim's tests run the built shim.
cargo build --quiet -p index2ip -p cni-shim -p netlab

if [ "$which" = all ] || [ "$which" = shim ]; then
    echo "==> cni-shim: 10 000 sequential calls"
    start=$SECONDS
    cargo test --quiet -p cni-shim --test tests -- --ignored churn::
    echo "    took $((SECONDS - start)) s"
fi
if [ "$which" = all ] || [ "$which" = chain ]; then
    echo "==> the chain: 500 pod add/del cycles (root)"
    start=$SECONDS
    cargo test --quiet -p netlab --test tests -- --ignored churn::
    echo "    took $((SECONDS - start)) s"
fi
if [ "$which" = all ] || [ "$which" = killed ]; then
    echo "==> the default lab killed during up, then down (root)"
    bin=${CARGO_TARGET_DIR:-target}/debug
    name=nlkill$$
    out=$(mktemp)
    trap '"$bin/netlab" down --name "$name" >/dev/null 2>&1 || true; rm -f "$out"' EXIT
    start=$SECONDS
    for ms in ${KILL_POINTS:-$(seq 10 40 890)}; do
        "$bin/netlab" up --name "$name" --manifests k8s --index2ip "$bin/index2ip" >/dev/null 2>&1 &
        pid=$!
        sleep "$(printf '0.%03d' "$ms")"
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        # The files under /var/run/netns, not `ip netns list`: a kill between a namespace's file and its bind mount
        # leaves a plain file there, which `ip` cannot query (and which `down` must remove all the same).
        made=$(ls /var/run/netns 2>/dev/null | grep -c "^$name-" || true)
        if ! "$bin/netlab" down --name "$name" >"$out" 2>&1 || ! grep -q "nothing left behind" "$out"; then
            echo "FAILED: killed after ${ms} ms ($made namespaces made), down did not clean up:" >&2
            cat "$out" >&2
            exit 1
        fi
        left=$(ls /var/run/netns 2>/dev/null | grep -c "^$name-" || true)
        if [ "$left" != 0 ] || [ -e "/run/netlab/$name" ]; then
            echo "FAILED: killed after ${ms} ms: $left namespaces or /run/netlab/$name left" >&2
            exit 1
        fi
        echo "    killed after ${ms} ms with $made namespaces made: down left nothing"
    done
    echo "    took $((SECONDS - start)) s"
fi

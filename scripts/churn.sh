#!/usr/bin/env bash
# Churn, too long for the test suite: 10 000 sequential calls through cni-shim (every record intact, the size bound
# held after each call), then 500 pods added and deleted through the real chain in a one-node lab (root: nothing
# leaked, no address handed out twice, DEL good with multus's stripped config), then the default lab killed (SIGKILL)
# during `up`, each fully removed by `down` (root): the emulated lab at 23 points of its first second, the lab on the
# real control plane at 8 points of its first 15 seconds (the control plane starting, the manifests applied, the
# DaemonSets' pods installing the plugins). Each part prints its own figures.
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
    # The real control plane's peers, where built: UPSTREAM_BIN (scripts/test.sh exports it), else the cache.
    peers=${UPSTREAM_BIN:-$(scripts/upstream.sh --bin-dir 2>/dev/null || true)}
    points=()
    for ms in ${KILL_POINTS:-$(seq 10 40 890)}; do points+=("emulate:$ms"); done
    if [ -n "$peers" ]; then
        for ms in ${KILL_POINTS_REAL:-500 1500 3000 4500 6000 8000 11000 15000}; do points+=("real:$ms"); done
    elif [ "${CI:-}" = true ]; then
        echo "FAILED: the upstream peers are not built (scripts/upstream.sh): the real control plane's kill points cannot run" >&2
        exit 1
    else
        echo "    SKIPPED: the lab on the real control plane killed during up: the upstream peers are not built"
    fi
    for point in "${points[@]}"; do
        mode=${point%%:*} ms=${point#*:}
        if [ "$mode" = emulate ]; then
            "$bin/netlab" up --emulate --name "$name" --manifests k8s --index2ip "$bin/index2ip" >/dev/null 2>&1 &
        else
            "$bin/netlab" up --peers "$peers" --name "$name" --manifests k8s --index2ip "$bin/index2ip" >/dev/null 2>&1 &
        fi
        pid=$!
        sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        # The files under /var/run/netns, not `ip netns list`: a kill between a namespace's file and its bind mount
        # leaves a plain file there, which `ip` cannot query (and which `down` must remove all the same).
        made=$(ls /var/run/netns 2>/dev/null | grep -c "^$name-" || true)
        if ! "$bin/netlab" down --name "$name" >"$out" 2>&1 || ! grep -q "nothing left behind" "$out"; then
            echo "FAILED: $mode lab killed after ${ms} ms ($made namespaces made), down did not clean up:" >&2
            cat "$out" >&2
            exit 1
        fi
        left=$(ls /var/run/netns 2>/dev/null | grep -c "^$name-" || true)
        # The pattern does not match its own command line.
        procs=$(grep -l -s "/run/netla[b]/$name/" /proc/[0-9]*/cmdline 2>/dev/null | wc -l || true)
        if [ "$left" != 0 ] || [ -e "/run/netlab/$name" ] || [ "$procs" != 0 ]; then
            echo "FAILED: $mode lab killed after ${ms} ms: $left namespaces, $procs processes or /run/netlab/$name left" >&2
            exit 1
        fi
        echo "    $mode lab killed after ${ms} ms with $made namespaces made: down left nothing"
    done
    echo "    took $((SECONDS - start)) s"
fi

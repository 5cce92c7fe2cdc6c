#!/usr/bin/env bash
# The lab demo: a small cluster's pod networking brought up on this machine from the manifests in k8s/, on the real
# control plane (etcd, kube-apiserver, the controller manager and the scheduler) with the real flanneld, multus,
# flannel plugin, reference plugins and index2ip, checked end to end as the internet sees it, shown, and taken
# down again with nothing left behind.
# Run as root on Debian or Ubuntu; installs what it needs, and builds the upstream peers the first time (about
# 8 minutes; cached in target/upstream). Extra arguments go to `netlab run` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

echo "==> the upstream peers: the control plane, flanneld, multus, flannel's plugin (a warm cache builds nothing)"
scripts/upstream.sh
peers=$(scripts/upstream.sh --bin-dir)

echo "==> building index2ip, cni-shim and netlab (release)"
cargo build --release --quiet -p index2ip -p cni-shim -p netlab

echo "==> index2ip's plan for the lab's first machine (mlab1, 192.0.2.9 in 192.0.2.0/26)"
plan=$(mktemp)
trap 'rm -f "$plan"' EXIT
echo "epoxy.ipv4=192.0.2.9/26,192.0.2.1,198.51.100.53, epoxy.ipv6=2001:db8:1::9/64,2001:db8:1::1,2001:db8:ffff::53," >"$plan"
target/release/index2ip plan --cmdline "$plan" | head -n 9
echo "   ..."

exec target/release/netlab run --peers "$peers" "$@"

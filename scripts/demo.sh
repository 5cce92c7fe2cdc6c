#!/usr/bin/env bash
# The demo: index2ip on an example node, from planning to a real pod interface in a network namespace.
# Run as root on Debian or Ubuntu; installs what it needs, builds the plugin, and removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }

step "building index2ip (release)"
cargo build --release --quiet -p index2ip
bin=$PWD/target/release/index2ip

work=$(mktemp -d)
tag="i2demo$$"
cleanup() {
    for ns in "$tag-node" "$tag-pod" "$tag-up"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# A node of a /26 site in documentation address space, booted with the keys index2ip reads.
cat > "$work/cmdline" <<'KEYS'
ro quiet epoxy.ipv4=192.0.2.112/26,192.0.2.65,192.0.2.53,192.0.2.54 epoxy.ipv6=2001:db8:2d::112/64,2001:db8:2d::1,2001:db8::53,2001:db8::54
KEYS
mkdir "$work/bin" && ln -s "$bin" "$work/bin/index2ip"

step "the node's keys and every index that fits (index2ip plan)"
"$bin" plan --cmdline "$work/cmdline"

config() { # VERSION INDEX
    printf '{"cniVersion":"%s","name":"index2ip-index-%s-conf","type":"macvlan","master":"eth0","mode":"bridge","ipam":{"type":"index2ip","index":%s,"cmdline":"%s"}}' \
        "$1" "$2" "$2" "$work/cmdline"
}
cni() { # COMMAND [ip netns exec NS] PROGRAM < config
    local command=$1; shift
    env -i PATH="$PATH" CNI_COMMAND="$command" CNI_CONTAINERID="$tag" CNI_NETNS="/var/run/netns/$tag-pod" \
        CNI_IFNAME=net1 CNI_PATH="$work/bin:/usr/lib/cni" "$@"
}

step "ADD for index 2, as ipvlan or macvlan would delegate it (cniVersion 1.0.0)"
config 1.0.0 2 | cni ADD "$bin"

step "ADD for index 15: refused with a CNI error, since .127 is the /26's broadcast address"
config 1.0.0 15 | cni ADD "$bin" || echo "(exit status $?)"

step "a real attachment: Debian's macvlan plugin with index2ip as its IPAM, in network namespaces"
for ns in node pod up; do ip netns add "$tag-$ns"; done
ip -n "$tag-node" link add eth0 type veth peer name uplink netns "$tag-up"
ip netns exec "$tag-pod" sysctl -qw net.ipv6.conf.default.accept_dad=0
ip -n "$tag-up" addr add 192.0.2.65/26 dev uplink
for l in "$tag-node eth0" "$tag-up uplink" "$tag-pod lo"; do set -- $l; ip -n "$1" link set "$2" up; done
config 1.0.0 2 | cni ADD ip netns exec "$tag-node" /usr/lib/cni/macvlan >/dev/null
echo "pod interface net1:"
ip -n "$tag-pod" -br addr show dev net1 | sed 's/^/  /'
ip -n "$tag-pod" route show default | sed 's/^/  /'
echo "ping from the pod to the block's gateway:"
ip netns exec "$tag-pod" ping -c1 -W2 192.0.2.65 | sed -n 2p | sed 's/^/  /'
config 1.0.0 2 | cni DEL ip netns exec "$tag-node" /usr/lib/cni/macvlan
echo "DEL done; removing the namespaces"

step "demo complete"

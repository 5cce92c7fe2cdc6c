#!/usr/bin/env bash
# Installs what index2ip's demo and tests need on a Debian or Ubuntu machine. Idempotent; run as root.
#
#   scripts/setup.sh            system packages and the Rust toolchain's components
#
# Every step says what it does; nothing is downloaded except from Debian's archive and Rust's crate registry.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: the lab and the network tests create network namespaces"

# Debian packages: the reference CNI plugins (macvlan, ipvlan, host-local, static...), ip, ping.
packages=(containernetworking-plugins iproute2 iputils-ping ca-certificates)
# A C compiler: the benchmark's C floor, and flanneld's cgo (scripts/upstream.sh).
packages+=(gcc libc6-dev)
# The control plane's keys (service-account signing pair), made by the apply tests and the lab.
packages+=(openssl)
# The VM of `netlab run --vm` (real ipvlan): qemu, a static busybox, depmod, GNU cpio.
packages+=(qemu-system-x86 busybox-static kmod cpio)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "system packages present"
fi

# Rust: a rustup toolchain where there is one, else Debian's.
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
    say "no Rust toolchain: installing Debian's cargo"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cargo rustc >/dev/null
fi
need=1.89
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
    die "rustc $have is older than $need: install a current toolchain with rustup, then run this again"
fi
if command -v rustup >/dev/null; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
fi
say "rust $have ready"

# Offline schema validation of the manifests: kubernetes-validate in a virtual environment of the checkout's own.
venv=target/tools/venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv --help >/dev/null 2>&1 || \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    say "installing kubernetes-validate into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
fi
command -v kubectl >/dev/null || say "WARNING: kubectl is missing: rendering k8s/ with kustomize cannot be checked"

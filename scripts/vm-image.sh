#!/usr/bin/env bash
# Builds the kernel and initramfs that `netlab run --vm` boots: Debian's stock kernel (which has ipvlan), a
# busybox-static userland, the Debian tools the lab drives (ip, bridge, nsenter, unshare, mount, umount, sysctl,
# ping; openssl and iptables for the lab on the control plane) and the reference CNI plugins with their shared
# libraries, the project's netlab, index2ip and cni-shim (with cni-shim-passthrough), and the k8s/ manifests. Its layout is merged-/usr, as
# Debian's: /bin, /sbin, /lib and /lib64 are links into /usr, so a container's root (built over /usr) has a shell.
# The upstream peers are not in the image: the VM runs the emulated lab. Run as root from anywhere in the checkout.
#
#   scripts/vm-image.sh                   build netlab, index2ip, cni-shim statically (musl where installed)
#   scripts/vm-image.sh --bin-dir DIR     use the project's binaries in DIR instead (static or not)
#   scripts/vm-image.sh --out DIR         the cache (default: $CARGO_TARGET_DIR/vm, else target/vm)
#
# The image is cached in OUT/images/KEY, KEY being a hash of the kernel package, the versions of every Debian
# package a copied file comes from, the project binaries, the manifests and this script; OUT/current points at the
# last one built. An unchanged input set builds nothing. Nothing is fetched but the kernel package, from Debian's
# archive (`apt-get download`), and crates for the build. The last line of output is the image directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'vm-image: %s\n' "$*" >&2; exit 1; }

bin_dir=""
out="${CARGO_TARGET_DIR:-$root/target}/vm"
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir=$(realpath "${2:?--bin-dir needs a directory}"); shift 2 ;;
        --out) out=$(realpath -m "${2:?--out needs a directory}"); shift 2 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run as root: the image's files must belong to root"
for tool in apt-get apt-cache dpkg dpkg-query depmod busybox cpio ldd sha256sum; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install kmod busybox-static cpio)"
done
busybox=$(command -v busybox)
[ -z "$(ldd "$busybox" 2>/dev/null | grep '=>')" ] || die "$busybox is not static: apt-get install busybox-static"

# The Debian tools the lab runs, and what it execs from the reference plugins.
tools=(ip bridge nsenter unshare mount umount sysctl ping openssl
       iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore)
# iptables loads its matches and targets from here at run time (ldd does not name them).
xtables_dir=$(dirname "$(readlink -f "$(ldd "$(readlink -f "$(command -v iptables)")" |
    sed -n 's/.*=> \(\/[^ ]*libxtables[^ ]*\) .*/\1/p')")")/xtables
cni_dir=/usr/lib/cni
[ -x "$cni_dir/ipvlan" ] || die "$cni_dir/ipvlan is missing: apt-get install containernetworking-plugins"
modules=(ipvlan macvlan veth bridge vxlan dummy
         # netfilter, for flanneld's masquerading (it also requires br_netfilter, as kubeadm does) and the portmap
         # plugin (iptables-nft); crc32c first, which
         # libcrc32c (under nf_tables and nf_conntrack) needs but modules.dep does not name
         br_netfilter crc32c_generic nf_tables nft_compat nft_chain_nat nft_ct nft_masq nft_nat nft_reject_inet
         x_tables xt_MASQUERADE xt_comment xt_conntrack xt_addrtype xt_mark xt_nat xt_multiport xt_tcpudp
         ipt_REJECT ip6t_REJECT
         # the network card on qemu's user network, through which `run --vm --peers` reaches the control plane
         virtio_pci virtio_net)

# --- the project's binaries ---------------------------------------------------------------------------------
project_bins=(netlab index2ip cni-shim cni-shim-passthrough)
if [ -z "$bin_dir" ]; then
    target=x86_64-unknown-linux-musl
    if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$target"; then
        say "building netlab, index2ip, cni-shim for $target"
        cargo build --release --target "$target" -p netlab -p index2ip -p cni-shim >&2
        bin_dir="${CARGO_TARGET_DIR:-$root/target}/$target/release"
    else
        target=$(rustc -vV | sed -n 's/^host: //p')
        say "no musl target installed: building netlab, index2ip, cni-shim as static glibc binaries"
        RUSTFLAGS="-C target-feature=+crt-static" \
            cargo build --release --target "$target" -p netlab -p index2ip -p cni-shim >&2
        bin_dir="${CARGO_TARGET_DIR:-$root/target}/$target/release"
    fi
fi
for b in "${project_bins[@]}"; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b is missing"
done

# --- the kernel package ---------------------------------------------------------------------------------------
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
[ -n "$kpkg" ] || die "apt knows no linux-image-amd64 (run apt-get update)"
kver=$(apt-cache policy "$kpkg" | sed -n 's/^ *Candidate: //p')
[ -n "$kver" ] && [ "$kver" != "(none)" ] || die "no candidate version of $kpkg"
krelease=${kpkg#linux-image-}
mkdir -p "$out/debs"
deb="$out/debs/${kpkg}_${kver//:/%3a}_amd64.deb"
if [ ! -f "$deb" ]; then
    say "downloading $kpkg $kver from Debian's archive"
    ( cd "$out/debs" && apt-get download "$kpkg=$kver" >&2 ) || die "apt-get download $kpkg=$kver failed"
fi
[ -f "$deb" ] || die "expected $deb after apt-get download"
kdir="$out/kernel-$krelease-$kver"
if [ ! -f "$kdir/.done" ]; then
    say "unpacking $kpkg $kver"
    rm -rf "$kdir"
    dpkg -x "$deb" "$kdir"
    depmod -b "$kdir" "$krelease"
    touch "$kdir/.done"
fi
moddir="$kdir/lib/modules/$krelease"

# Modules in load order: each one's dependencies (modules.dep lists them deepest last) before it.
ordered=()
add_module() {
    local rel=$1 i line deps seen
    for seen in "${ordered[@]:-}"; do [ "$seen" = "$rel" ] && return 0; done
    line=$(grep -m1 "^$rel:" "$moddir/modules.dep") || die "$rel is not in modules.dep"
    deps=(${line#*:})
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do add_module "${deps[i]}"; done
    ordered+=("$rel")
}
for m in "${modules[@]}"; do
    rel=$(grep -m1 -E "^([^:]*/)?$m\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | cut -d: -f1) ||
        die "kernel $krelease has no module $m"
    add_module "$rel"
done

# --- every file of the image and where it comes from --------------------------------------------------------
declare -A files=()   # destination in the image -> source on this machine
elf_with_libs() {     # $1 source, $2 destination: the file, and for a dynamic ELF its libraries and loader
    files[$2]=$1
    local lib
    while read -r lib; do
        [ -n "$lib" ] && files[$lib]=$(readlink -f "$lib")
    done < <(ldd "$1" 2>/dev/null | sed -n -e 's/.*=> \(\/[^ ]*\) .*/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p')
}
for t in "${tools[@]}"; do
    p=$(command -v "$t") || die "$t is missing"
    elf_with_libs "$(readlink -f "$p")" "/usr/bin/$t"
done
[ -d "$xtables_dir" ] || die "iptables's extensions are not in $xtables_dir"
for p in "$xtables_dir"/*.so; do
    files[$p]=$p
done
for p in "$cni_dir"/*; do
    [ -f "$p" ] && elf_with_libs "$(readlink -f "$p")" "$cni_dir/$(basename "$p")"
done
for b in "${project_bins[@]}"; do
    elf_with_libs "$bin_dir/$b" "/opt/netlab/bin/$b"
done
files[/usr/bin/busybox]=$busybox

# The key: the kernel package, the Debian packages the copied files come from, the project binaries and
# manifests, this script.
declare -A pkgs=()
for dest in "${!files[@]}"; do
    src=${files[$dest]}
    case "$src" in "$bin_dir"/*|"$xtables_dir"/*) continue ;; esac
    owner=""
    # dpkg records merged-/usr files under their old names (/bin/ip, /lib/x86_64-linux-gnu/libc.so.6).
    for cand in "$src" "${src#/usr}" "$(echo "${src#/usr}" | sed "s|/bin/|/sbin/|")" "$dest" "${dest#/usr}"; do
        if owner=$(dpkg -S "$cand" 2>/dev/null | head -n1 | cut -d: -f1 | cut -d, -f1) && [ -n "$owner" ]; then break; fi
    done
    [ -n "$owner" ] || die "$src belongs to no Debian package: only Debian's files go into the image"
    pkgs[$owner]=1
done
pkgs[$(dpkg -S "$xtables_dir" | head -n1 | cut -d: -f1 | cut -d, -f1)]=1
key_input=$(
    echo "kernel $kpkg $kver"
    for p in $(printf '%s\n' "${!pkgs[@]}" | sort); do
        echo "package $p $(dpkg-query -W -f='${Version}' "$p")"
    done
    for b in "${project_bins[@]}"; do echo "binary $b $(sha256sum < "$bin_dir/$b" | cut -d' ' -f1)"; done
    echo "manifests $(cd "$root" && find k8s -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
    echo "script $(sha256sum < "$0" | cut -d' ' -f1)"
)
key=$(printf '%s\n' "$key_input" | sha256sum | cut -c1-16)
image="$out/images/$key"
if [ -f "$image/initramfs.cpio" ] && [ -f "$image/vmlinuz" ]; then
    say "image $key is current (kernel $krelease, $kpkg $kver)"
    ln -sfn "images/$key" "$out/current"
    echo "$image"
    exit 0
fi

say "assembling image $key: kernel $krelease, ${#ordered[@]} modules, ${#files[@]} files"
stage=$(mktemp -d "$out/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
for d in usr/bin usr/sbin usr/lib usr/lib64 dev proc sys run tmp etc var/lib vm opt/netlab; do mkdir -p "$stage/$d"; done
for d in bin sbin lib lib64; do ln -s "usr/$d" "$stage/$d"; done
ln -s ../run "$stage/var/run"
chmod 1777 "$stage/tmp"
for dest in "${!files[@]}"; do
    # Merged /usr: /lib/x86_64-linux-gnu/libc.so.6 is /usr/lib/x86_64-linux-gnu/libc.so.6.
    case "$dest" in /bin/*|/sbin/*|/lib/*|/lib64/*) at="/usr$dest" ;; *) at=$dest ;; esac
    mkdir -p "$stage$(dirname "$at")"
    cp "${files[$dest]}" "$stage$at"
done
# The project's binaries without symbols: a smaller image boots faster under software emulation.
if command -v strip >/dev/null; then
    for b in "${project_bins[@]}"; do strip --strip-all "$stage/opt/netlab/bin/$b"; done
fi
# busybox applets for whatever Debian's tools do not provide (sh, insmod, reboot...).
for applet in $("$busybox" --list); do
    [ -e "$stage/usr/bin/$applet" ] || [ -e "$stage/usr/sbin/$applet" ] || ln -s busybox "$stage/usr/bin/$applet"
done
mkdir -p "$stage/usr/lib/modules/$krelease"
for m in "${ordered[@]}"; do
    mkdir -p "$stage/usr/lib/modules/$krelease/$(dirname "$m")"
    cp "$moddir/$m" "$stage/usr/lib/modules/$krelease/$m"
    echo "/lib/modules/$krelease/$m"
done > "$stage/etc/netlab-vm-modules"
cp -r "$root/k8s" "$stage/opt/netlab/k8s"
printf '%s\n' "$key_input" > "$stage/etc/netlab-vm-image"
cat > "$stage/init" <<'EOF'
#!/bin/sh
# The VM's init: mount the kernel's file systems, load the network modules, run the command netlab passed in
# /vm/args (one argument a line: `netlab run ...`, or what `netlab vm-exec` ships), report its exit status, and
# reboot (qemu runs with -no-reboot, so it exits).
export PATH=/opt/netlab/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
# /tmp stays on the initramfs (already in memory), where vm-exec may have put files.
exec </dev/console >/dev/console 2>&1
echo NETLAB-VM-BEGIN
while read -r m; do insmod "$m" || echo "netlab-vm: cannot load $m"; done < /etc/netlab-vm-modules
echo "==> VM: kernel $(uname -r): $(cat /proc/version)"
echo "==> VM: modules loaded: $(cut -d' ' -f1 /proc/modules | sort | tr '\n' ' ')"
# qemu's user network, when netlab gave the VM a card on it: the guest is 10.0.2.15, this machine 10.0.2.2.
if [ -e /sys/class/net/eth0 ]; then
    ip link set lo up
    ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && echo "==> VM: eth0 10.0.2.15/24 on qemu's user network"
fi
rc=2
if [ -f /vm/args ]; then
    cd /vm
    set --
    while IFS= read -r a; do set -- "$@" "$a"; done < /vm/args
    "$@"
    rc=$?
else
    echo "netlab-vm: no /vm/args: this image is booted by netlab run --vm or netlab vm-exec"
fi
echo "NETLAB-VM-EXIT=$rc"
reboot -f
EOF
chmod 0755 "$stage/init"
# Reproducible: fixed times, sorted entries, inodes numbered in order, all owned by root.
find "$stage" -exec touch -h -d @0 {} +
mkdir -p "$image.tmp"
# Uncompressed: under software emulation the kernel unpacks it faster than any compressed form.
( cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
    cpio --quiet -o -H newc --reproducible -R 0:0 ) > "$image.tmp/initramfs.cpio"
cp "$kdir/boot/vmlinuz-$krelease" "$image.tmp/vmlinuz"
printf '%s\n' "$key_input" > "$image.tmp/key.txt"
echo "$krelease" > "$image.tmp/kernel-release"
rm -rf "$image"
mv "$image.tmp" "$image"
ln -sfn "images/$key" "$out/current"
# Keep the three newest images (about 70 MB each); a cache is not an archive.
( cd "$out/images" && ls -1t | tail -n +4 | while read -r old; do rm -rf -- "./$old"; done )
say "image $key: $(du -h "$image/initramfs.cpio" | cut -f1) initramfs, kernel $krelease"
echo "$image"

#!/usr/bin/env bash
# Builds the installer image from static binaries, checks what it contains, and tags it for a registry.
#
#   images/build.sh [--registry REGISTRY] [--push] [--binaries DIR]
#
# The image is REGISTRY/index2ip-installer (default registry: localhost, where podman keeps local builds and what
# k8s/installer names), tagged twice: VERSION (the workspace's) and VERSION-CONTENT, CONTENT a hash of everything in
# the image. Roll out by the second: a rebuild with other binaries is another tag, so it reaches every node even
# with imagePullPolicy IfNotPresent (k8s/README.md, "Rolling out"). Earlier builds keep their tags, to roll back
# to; `podman --storage-driver vfs rmi` removes them. --push pushes both tags to REGISTRY.
#
# --binaries takes index2ip and cni-shim already built (static); otherwise they are built here: musl where the
# target is installed, static glibc otherwise. Needs podman (vfs storage, so no kernel overlay support is
# needed) and a static busybox (Debian: busybox-static).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
registry=localhost
push=0
bins=""
usage() { echo "usage: $0 [--registry REGISTRY] [--push] [--binaries DIR]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --registry) registry=${2:?--registry needs a value}; shift 2 ;;
    --push) push=1; shift ;;
    --binaries) bins=${2:?--binaries needs a directory}; shift 2 ;;
    *) usage ;;
    esac
done
registry=${registry%/}
name="$registry/index2ip-installer"

fail() { echo "images/build.sh: $*" >&2; exit 1; }
[ "$push" = 0 ] || [ "$registry" != localhost ] || fail "--push needs --registry: localhost/ is this machine's own store"
command -v podman >/dev/null || fail "podman is not installed (Debian: apt-get install podman)"
busybox=/bin/busybox
[ -x "$busybox" ] || fail "no $busybox (Debian: apt-get install busybox-static)"

# ldd fails on a static binary, saying so; its status is not the answer.
is_static() {
    local out
    out=$(ldd "$1" 2>&1 || true)
    grep -Eq 'not a dynamic executable|statically linked' <<<"$out"
}
is_static "$busybox" || fail "$busybox is dynamically linked (install busybox-static)"

if [ -z "$bins" ]; then
    target_dir=${CARGO_TARGET_DIR:-$root/target}
    musl=x86_64-unknown-linux-musl
    if rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
        target=$musl
        (cd "$root" && cargo build --release --target "$target" -p index2ip -p cni-shim)
    else
        # The target is named so that only the binaries, not build scripts, are linked statically.
        target=x86_64-unknown-linux-gnu
        (cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target "$target" -p index2ip -p cni-shim)
    fi
    bins="$target_dir/$target/release"
fi

ctx=$(mktemp -d)
mnt=""
cleanup() {
    if [ -n "$mnt" ]; then podman --storage-driver vfs image unmount "$tag" >/dev/null 2>&1 || true; fi
    rm -rf "$ctx"
}
trap cleanup EXIT

for b in index2ip cni-shim cni-shim-passthrough; do
    [ -f "$bins/$b" ] || fail "no $bins/$b"
    is_static "$bins/$b" || fail "$bins/$b is dynamically linked; the image has no libraries"
    install -m 0755 "$bins/$b" "$ctx/$b"
done
install -m 0755 "$busybox" "$ctx/busybox"
install -m 0644 "$root/images/install.sh" "$ctx/install.sh"
install -m 0644 "$root/images/Containerfile" "$ctx/Containerfile"

# The content tag: the files of the image and the recipe that puts them there.
content=$(cd "$ctx" && sha256sum Containerfile busybox cni-shim cni-shim-passthrough index2ip install.sh | sha256sum | cut -c1-12)
tag="$name:$version-$content"
podman --storage-driver vfs build --quiet --layers=false --build-arg "VERSION=$version" \
    -t "$tag" -t "$name:$version" -f "$ctx/Containerfile" "$ctx" >/dev/null

# What the image holds, exactly.
mnt=$(podman --storage-driver vfs image mount "$tag")
got=$(cd "$mnt" && find . -mindepth 1 | sort)
want=$(printf '%s\n' ./bin ./bin/busybox ./install.sh ./opt ./opt/cni ./opt/cni/bin ./opt/cni/bin/cni-shim ./opt/cni/bin/cni-shim-passthrough ./opt/cni/bin/index2ip)
if [ "$got" != "$want" ]; then
    diff <(echo "$want") <(echo "$got") >&2 || true
    fail "the image does not hold exactly the expected files (- expected, + found)"
fi
for f in bin/busybox opt/cni/bin/index2ip opt/cni/bin/cni-shim opt/cni/bin/cni-shim-passthrough; do
    [ -x "$mnt/$f" ] || fail "$f is not executable in the image"
    is_static "$mnt/$f" || fail "$f is not static in the image"
    cmp -s "$mnt/$f" "$ctx/${f##*/}" || fail "$f in the image differs from what was copied in"
done
reply=$(CNI_COMMAND=VERSION "$mnt/opt/cni/bin/index2ip" </dev/null)
case "$reply" in
*'"1.1.0"'*) ;;
*) fail "index2ip from the image answered VERSION with: $reply" ;;
esac
entry=$(podman --storage-driver vfs image inspect --format '{{json .Config.Entrypoint}}' "$tag")
[ "$entry" = '["/bin/busybox","sh","/install.sh"]' ] || fail "unexpected entrypoint $entry"

size=$(podman --storage-driver vfs image inspect --format '{{.Size}}' "$tag")
echo "images/build.sh: built $tag and $name:$version ($size bytes): bin/busybox, install.sh, opt/cni/bin/{index2ip,cni-shim,cni-shim-passthrough}, all static"
if [ "$push" = 1 ]; then
    podman --storage-driver vfs push "$tag"
    podman --storage-driver vfs push "$name:$version"
    echo "images/build.sh: pushed $tag and $name:$version"
fi
echo "images/build.sh: to roll it out, in your overlay of k8s/ (k8s/README.md, \"Rolling out\"):"
echo "  images:"
echo "    - name: localhost/index2ip-installer"
echo "      newName: $name"
echo "      newTag: $version-$content"

#!/usr/bin/env bash
# Builds the upstream programs index2ip is tested beside, from the Go module proxy only, at the versions pinned in
# upstream/versions.env: the Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl), etcd, multus (thin plugin and thin_entrypoint), flanneld and its install-conf, flannel's CNI plugin
# and cnitool.
#
#   scripts/upstream.sh            build what the cache lacks, print progress and the total time
#   scripts/upstream.sh --bin-dir  print the directory holding the binaries (builds nothing; exits 1 if incomplete)
#
# Binaries land in target/upstream/<key>/bin, where <key> hashes versions.env, this script, the wrapper sources
# and the Go version, so an unchanged set builds nothing; target/upstream/bin points at the newest complete set.
# A module the proxy refuses is named, and the others are still built; the exit status is then 3.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

die() { printf 'upstream: %s\n' "$*" >&2; exit 1; }
# The Go toolchain's usual home, for shells that did not read a profile.
command -v go >/dev/null || { [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"; }
command -v go >/dev/null || die "no Go toolchain on PATH: install Go 1.26 or newer (Debian: golang-go from backports)"

# shellcheck source=../upstream/versions.env
. upstream/versions.env

export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
go_version=$(go env GOVERSION)
key=$( { cat upstream/versions.env scripts/upstream.sh upstream/etcd/main.go; echo "$go_version"; } \
    | sha256sum | cut -c1-12)
cache=$root/target/upstream/$key
bin=$cache/bin

# Every binary of a set, in build order, as "file:recipe".
set_binaries=(
    kube-apiserver:kubernetes kube-controller-manager:kubernetes kube-scheduler:kubernetes kubectl:kubernetes
    etcd:etcd multus:multus thin_entrypoint:multus flanneld:flanneld install-conf:flanneld flannel:flannel-cni
    cnitool:cnitool
)

complete() {
    local entry
    for entry in "${set_binaries[@]}"; do [ -x "$bin/${entry%%:*}" ] || return 1; done
}

if [ "${1:-}" = "--bin-dir" ]; then
    complete || { printf 'upstream: the peers are not built: run scripts/upstream.sh\n' >&2; exit 1; }
    printf '%s\n' "$bin"
    exit 0
elif [ $# -gt 0 ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    case $1 in -h | --help) exit 0 ;; *) printf '\nupstream: unknown argument %s\n' "$1" >&2; exit 2 ;; esac
fi

mkdir -p "$bin" "$cache/src"
log_dir=$cache/logs
mkdir -p "$log_dir"
refused=()
failed=()
started=$(date +%s)

# Runs one build step with its output in a log; on failure tells a proxy refusal from any other error.
# $1: what (for messages), $2: the module@version it fetches, the rest: the command.
build() {
    local what=$1 module=$2 log=$log_dir/$1.log t0
    shift 2
    t0=$(date +%s)
    printf '    building %-24s from %s ... ' "$what" "$module"
    if "$@" >"$log" 2>&1; then
        printf 'done in %d s\n' $(( $(date +%s) - t0 ))
        return 0
    fi
    if grep -qE 'not available|410 Gone|404 Not Found|unknown revision|invalid version' "$log"; then
        printf 'REFUSED by the module proxy\n'
        refused+=("$module")
    else
        printf 'FAILED (log: %s)\n' "${log#"$root"/}"
        tail -n 15 "$log" | sed 's/^/      /'
        failed+=("$module")
    fi
    return 1
}

# A wrapper module that requires one module at its pinned release: `go build` inside it reaches the module's commands
# without `go install module@version`, which refuses modules whose go.mod has replace lines and asks the proxy for a
# version list it may not serve. $1: the directory, $2: module@version, $3: when not empty, each replace to a relative
# path in the module's own go.mod becomes the same module at this version; the rest: extra replace lines (old=new@v).
wrapper() {
    local dir=$1 module=$2 replaced_version=$3 mod
    shift 3
    rm -rf "$dir" && mkdir -p "$dir"
    (
        cd "$dir"
        go mod init "index2ip.test/upstream/$(basename "$dir")" >/dev/null 2>&1
        go mod edit -require="$module"
        if [ -n "$replaced_version" ]; then
            mod=$(go mod download -json "$module" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
            [ -n "$mod" ] || exit 1
            awk '$2 == "=>" && $3 ~ /^\.\.?\// && $3 !~ /FORBIDDEN/ { print $1 }' "$mod" | while read -r m; do
                go mod edit -replace="$m=$m@$replaced_version"
            done
        fi
        for r in "$@"; do go mod edit -replace="$r"; done
    )
}

# go build inside a wrapper module. $1: the wrapper's directory; the rest: go build's arguments.
wrapped_build() {
    local dir=$1
    shift
    ( cd "$dir" && GOFLAGS="$GOFLAGS -mod=mod" go build "$@" )
}

kubernetes() {
    local dir=$cache/src/kubernetes minor=${KUBERNETES_VERSION#v1.} v=k8s.io/component-base/version
    wrapper "$dir" "k8s.io/kubernetes@$KUBERNETES_VERSION" "v0.$minor" || return 1
    wrapped_build "$dir" -o "$bin/" \
        -ldflags "-s -w -X $v.gitVersion=$KUBERNETES_VERSION -X $v.gitMajor=1 -X $v.gitMinor=${minor%%.*} \
                  -X $v.gitTreeState=clean" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
}

etcd() {
    local dir=$cache/src/etcd
    wrapper "$dir" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "$ETCD_VERSION" || return 1
    cp upstream/etcd/main.go "$dir/"
    wrapped_build "$dir" -o "$bin/etcd" -ldflags "-s -w" .
}

multus() {
    local dir=$cache/src/multus m=gopkg.in/k8snetworkplumbingwg/multus-cni.v4
    wrapper "$dir" "$m@$MULTUS_VERSION" "" || return 1
    wrapped_build "$dir" -o "$bin/" -ldflags "-s -w" "$m/cmd/multus" "$m/cmd/thin_entrypoint"
}

# flanneld links its udp backend through cgo, as upstream builds it.
flanneld() {
    local dir=$cache/src/flannel m=github.com/flannel-io/flannel
    # shellcheck disable=SC2086 # FLANNEL_REPLACE holds space-separated replace lines
    wrapper "$dir" "$m@$FLANNEL_VERSION" "" $FLANNEL_REPLACE || return 1
    CGO_ENABLED=1 wrapped_build "$dir" -o "$bin/flanneld" \
        -ldflags "-s -w -X $m/pkg/version.Version=$FLANNEL_VERSION" "$m"
    # The flannel image's installer of the CNI configuration (a temporary file renamed into place).
    CGO_ENABLED=0 wrapped_build "$dir" -o "$bin/install-conf" -ldflags "-s -w" "$m/cmd/install_conf"
}

flannel_cni() {
    local dir=$cache/src/flannel-cni
    wrapper "$dir" "$FLANNEL_CNI_MODULE@$FLANNEL_CNI_VERSION" "" || return 1
    wrapped_build "$dir" -o "$bin/flannel" -ldflags "-s -w" "$FLANNEL_CNI_MODULE/plugins/meta/flannel"
}

cnitool() {
    local dir=$cache/src/cnitool
    wrapper "$dir" "github.com/containernetworking/cni@$CNI_VERSION" "" || return 1
    wrapped_build "$dir" -o "$bin/cnitool" -ldflags "-s -w" github.com/containernetworking/cni/cnitool
}

printf '==> upstream peers (cache %s, %s)\n' "${cache#"$root"/}" "$go_version"
done_recipes=" "
for entry in "${set_binaries[@]}"; do
    file=${entry%%:*} recipe=${entry#*:}
    case $done_recipes in *" $recipe "*) continue ;; esac
    done_recipes+="$recipe "
    # A recipe is cached when every binary it makes is there.
    have=1
    for e in "${set_binaries[@]}"; do
        [ "${e#*:}" = "$recipe" ] && [ ! -x "$bin/${e%%:*}" ] && have=0
    done
    if [ $have = 1 ]; then
        printf '    cached   %s\n' "$recipe"
        continue
    fi
    case $recipe in
        kubernetes) build kubernetes "k8s.io/kubernetes@$KUBERNETES_VERSION" kubernetes || true ;;
        etcd) build etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION" etcd || true ;;
        multus) build multus "gopkg.in/k8snetworkplumbingwg/multus-cni.v4@$MULTUS_VERSION" multus || true ;;
        flanneld) build flanneld "github.com/flannel-io/flannel@$FLANNEL_VERSION" flanneld || true ;;
        flannel-cni) build flannel-cni "$FLANNEL_CNI_MODULE@$FLANNEL_CNI_VERSION" flannel_cni || true ;;
        cnitool) build cnitool "github.com/containernetworking/cni@$CNI_VERSION" cnitool || true ;;
    esac
done

printf '    not built: github.com/m-lab/index2ip@%s (the original index2ip: the module proxy refuses it)\n' \
    "$INDEX2IP_ORIGINAL_VERSION"
printf '==> %d s in all\n' $(( $(date +%s) - started ))
if [ ${#refused[@]} -gt 0 ]; then
    printf 'upstream: the module proxy refused: %s\n' "${refused[*]}" >&2
    exit 3
fi
[ ${#failed[@]} -eq 0 ] || die "failed to build: ${failed[*]} (logs in ${log_dir#"$root"/})"
complete || die "the set is incomplete after the build"
ln -sfn "$key/bin" "$root/target/upstream/bin"
# Older sets (another versions file or Go) are about 400 MB each: keep only this one.
for old in "$root"/target/upstream/*/; do
    [ "$(basename "$old")" = "$key" ] || [ "$(basename "$old")" = bin ] || rm -rf "$old"
done
printf '==> peers ready in %s\n' "${bin#"$root"/}"

# Run by the installer DaemonSet (k8s/installer/daemonset.yaml) with the image's busybox:
#   install.sh install DIR   copy every plugin in /opt/cni/bin to DIR, each as a temporary file renamed into
#                            place, so the runtime never executes a half-written binary
#   install.sh wait          stay up until told to stop, so the pod keeps running and a new image rolls out anew
# INSTALL_SRC overrides /opt/cni/bin (for testing outside the image).
set -eu

install_all() {
    dest=$1
    src=${INSTALL_SRC:-/opt/cni/bin}
    if [ ! -d "$dest" ]; then
        echo "install.sh: $dest is not a directory: mount the host's CNI bin dir there" >&2
        exit 1
    fi
    tmp=
    trap 'if [ -n "$tmp" ]; then rm -f "$tmp"; fi' EXIT
    for path in "$src"/*; do
        name=${path##*/}
        tmp="$dest/.$name.installing.$$"
        cp "$path" "$tmp"
        chmod 0755 "$tmp"
        # A binary that cannot run on this node is not put in place.
        if [ "$name" = index2ip ] && ! CNI_COMMAND=VERSION "$tmp" </dev/null >/dev/null; then
            echo "install.sh: $name does not run on this node; left the installed one alone" >&2
            exit 1
        fi
        mv -f "$tmp" "$dest/$name"
        tmp=
        echo "install.sh: installed $dest/$name"
    done
}

case "${1:-}" in
install)
    install_all "${2:?usage: install.sh install DIR}"
    ;;
wait)
    trap 'exit 0' TERM INT
    while :; do
        sleep 3600 &
        wait $! || true
    done
    ;;
*)
    echo "usage: install.sh install DIR | install.sh wait" >&2
    exit 2
    ;;
esac

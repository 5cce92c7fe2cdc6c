#!/usr/bin/env bash
# Deploys the cluster network: the one apply sequence k8s/README.md documents, and what the tests run.
#
#   scripts/apply.sh [DIR]
#
# 1. the NetworkAttachmentDefinition CRD (k8s/crds), on its own;
# 2. waits until the API server serves it (condition Established);
# 3. everything else: DIR, default k8s/, or an overlay of it (one that sets the installer image, say).
#
# kubectl maps the kind of every object before it applies any, so a CRD and its custom resources in one apply fail
# on a fresh cluster ("ensure CRDs are installed first"); hence two applies with a wait between. Every step is an
# apply, so running it again changes nothing. kubectl's context is the current one (KUBECONFIG, --context through
# KUBECTL="kubectl --context NAME"); KUBECTL names another kubectl.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/k8s}
[ $# -le 1 ] || { echo "usage: $0 [DIR]" >&2; exit 2; }
read -r -a kubectl <<<"${KUBECTL:-kubectl}"
crd=network-attachment-definitions.k8s.cni.cncf.io

"${kubectl[@]}" apply -k "$root/k8s/crds"
"${kubectl[@]}" wait --for=condition=Established --timeout=60s "crd/$crd"
"${kubectl[@]}" apply -k "$dir"

#!/usr/bin/env bash
# The manifest checks the test command runs.
#
# Renders the two apply units of scripts/apply.sh (k8s/crds, then k8s/) with kustomize, validates every object
# Kubernetes knows against the official schemas offline (--strict: unknown fields are errors), lints the source
# trees and the rendered streams with netlab, and checks that the generated manifests are current. Needs kubectl and kubernetes-validate (scripts/setup.sh installs it).
# NETLAB may name a built netlab binary; otherwise it is run through cargo.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
validate=${KUBERNETES_VALIDATE:-target/tools/venv/bin/kubernetes-validate}
if [ -n "${NETLAB:-}" ]; then netlab=("$NETLAB"); else netlab=(cargo run --quiet -p netlab --); fi

command -v kubectl >/dev/null || { echo "validate-k8s: kubectl is not installed" >&2; exit 1; }
command -v "$validate" >/dev/null || { echo "validate-k8s: $validate is not installed (scripts/setup.sh installs it)" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

kubectl kustomize k8s/crds >"$out/crds.yaml"
kubectl kustomize k8s >"$out/rendered.yaml"
echo "validate-k8s: rendered $(grep -c '^kind:' "$out/crds.yaml") + $(grep -c '^kind:' "$out/rendered.yaml") objects"

# NetworkAttachmentDefinition is a custom resource the schemas do not know: netlab lint checks those. Any other
# warning (an unknown kind, a typo'd apiVersion) fails.
status=0
"$validate" --strict --quiet "$out/crds.yaml" "$out/rendered.yaml" >"$out/validate.log" 2>&1 || status=$?
grep -v "Couldn't find schema for kind NetworkAttachmentDefinition with api version k8s.cni.cncf.io/v1 " \
    "$out/validate.log" >"$out/other.log" || true
if [ "$status" -ne 0 ] || [ -s "$out/other.log" ]; then
    cat "$out/other.log" >&2
    echo "validate-k8s: schema validation failed" >&2
    exit 1
fi
echo "validate-k8s: every built-in object matches the Kubernetes schemas (strict)"

"${netlab[@]}" gen --check
"${netlab[@]}" lint k8s/crds k8s
"${netlab[@]}" lint "$out/crds.yaml" "$out/rendered.yaml"

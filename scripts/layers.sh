#!/usr/bin/env bash
# The crate layers of ARCHITECTURE.md, checked: each crate's normal (not dev) dependencies among the workspace's
# crates must avoid what the "must never depend on" column forbids. Cargo already refuses cycles; this refuses the
# edges that would compile but break the layering (the protocol knowing a plugin, the plugin knowing the lab).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
forbidden = {
    "cni": {"index2ip", "cni-shim", "netlab-model", "netlab-lint", "netlab-lab", "netlab", "bench", "test-support"},
    "index2ip": {"cni-shim", "netlab-model", "netlab-lint", "netlab-lab", "netlab"},
    "cni-shim": {"index2ip", "netlab-model", "netlab-lint", "netlab-lab", "netlab"},
    "netlab-model": {"netlab-lint", "netlab-lab", "netlab"},
    "netlab-lint": {"netlab-lab", "netlab"},
    "netlab-lab": {"netlab-lint", "netlab"},
}
packages = json.load(sys.stdin)["packages"]
ours = {p["name"] for p in packages}
bad = []
for p in packages:
    for d in p["dependencies"]:
        if d["kind"] is None and d["name"] in forbidden.get(p["name"], ()):
            bad.append(p["name"] + " depends on " + d["name"])
    # test-support is for tests only.
    bad += [p["name"] + " depends on test-support outside its tests" for d in p["dependencies"]
            if d["name"] == "test-support" and d["kind"] is None]
missing = set(forbidden) - ours
if missing:
    bad.append("the layer table names crates that do not exist: " + ", ".join(sorted(missing)))
for line in bad:
    print("layers: " + line, file=sys.stderr)
if bad:
    sys.exit(1)
print("layers: %d crates, no forbidden dependency" % len(ours))
'

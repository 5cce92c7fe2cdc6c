//! netlab's integration tests: the binary and the lab for real (the rules' own tests are netlab-lint's).
//!
//! - `lab`: the lab for real (root): the default lab up, checked and down with nothing left; a /29 site refusing an
//!   index against the right pod; one index asked for twice on a node; a lab killed during `up` removed by `down`;
//! - `churn`: 500 pods added and deleted through the real chain on one node (root), nothing leaked, no address
//!   handed out twice, DEL good also with multus's stripped config (ignored: run by `scripts/churn.sh chain`);
//! - `vm`: the lab inside a VM booted from Debian's stock kernel (root, qemu): the default lab with real ipvlan;
//!   every index network on one machine, and a duplicate index refused by the kernel against both pods; index2ip's
//!   ipvlan interop test and cni-shim's netns test run there with real ipvlan;
//!   `vm-exec` running a shipped file there;
//! - `apply`: scripts/apply.sh, the documented apply sequence, on a real etcd and kube-apiserver in a network
//!   namespace (root, the upstream peers): every object accepted the first time, every verb multus and flannel call
//!   allowed, a second apply a no-op, and the old single apply failing on a clean cluster;
//! - `control_plane`: the lab on the real control plane (root, the upstream peers): every pod running with its
//!   address, multus's network-status on each multus pod, a /26 per node, `check` passing, nothing left by `down`;
//! - `cli`: the binary: exit codes, file:line, JSON, `--nodes`, `gen --check` on the checked-in tree and on a
//!   changed copy.

// A failed unwrap or panic here is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod apply;
mod churn;
mod cli;
mod control_plane;
mod lab;
mod util;
mod vm;

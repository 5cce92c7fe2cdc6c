//! The lab: a small cluster on one machine, in network namespaces, from the real manifests, on the real control
//! plane with the real plugins. Every root-only and `unsafe` line of netlab is here.
//!
//! - [`verbs`]: what the `netlab` commands call: `up`, `status`, `kubeconfig`, `check`, `exec`, `down`, `run`;
//! - [`build`]: `up`, recording everything in the [`state`] file before making it: the site, its router (which
//!   sends [`ra`] advertisements) and the internet client behind it, the nodes;
//! - on the real control plane: [`real`] (the rest of `up`), [`control_plane`] (etcd, kube-apiserver, the
//!   controllers and the scheduler from the upstream peers), [`kubelet`] (each node's kubelet and runtime: it runs
//!   [`containers`] from the [`images`] table and gives pods a [`sandbox`], reading the API through [`kube`]),
//!   [`forward`] (the API server on the host's loopback);
//! - with `--emulate`: [`runtime`], attaching pods with multus and flannel semantics and the real plugins;
//! - [`exec`]: the runtime side of CNI, a plugin or a chain run as libcni runs them;
//! - [`status`], [`check`], [`teardown`] (`down`);
//! - [`sys`] (namespaces made and entered from threads, mounts) and [`netlink`] (links, addresses, routes);
//! - [`vm`]: `run --vm`, the emulated lab inside a VM whose kernel has ipvlan.
//!
//! What the lab runs comes from [`netlab_model`]: a [`netlab_model::topology::Topology`] and the
//! [`netlab_model::cluster::Cluster`] the manifests describe.
//!
//! # Quick start
//!
//! ```no_run
//! use netlab_lab::verbs::{self, LabArgs};
//! use netlab_model::{cluster::Cluster, topology::Topology};
//!
//! let args = LabArgs {
//!     name: "netlab".into(),
//!     topology: None,
//!     manifests: "k8s".into(),
//!     index2ip: None,
//!     reference_dir: None,
//!     trace: None,
//!     control_plane: None,
//!     remote_control_plane: None,
//! };
//! let passed = verbs::run(&args, &Topology::default(), &Cluster::default(), &mut std::io::stdout())?;
//! # Ok::<(), netlab_lab::Error>(())
//! ```

pub mod build;
pub mod check;
pub mod containers;
pub mod control_plane;
mod error;
pub mod exec;
pub mod forward;
pub mod images;
pub mod kube;
pub mod kubelet;
pub mod netlink;
pub mod ra;
pub mod real;
pub mod runtime;
pub mod sandbox;
pub mod state;
pub mod status;
pub mod sys;
pub mod teardown;
pub mod verbs;
pub mod vm;

pub use error::Error;

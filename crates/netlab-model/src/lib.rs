//! netlab's model: the manifests, the cluster they describe, and the project's facts, as types.
//!
//! Pure: every function takes text or values it is handed and returns types or a typed error; nothing here reads
//! a file, runs a program or needs root. `netlab lint` checks these types, the lab runs them, and `netlab gen`
//! renders the manifests that repeat themselves from the same [`facts`].
//!
//! - [`facts`]: the names, namespaces, versions and sizes the manifests are written from;
//! - [`manifest`]: YAML into [`manifest::Object`]s that remember file and line ([`manifest::ParseError`] for a
//!   document that is not one);
//! - [`workload`]: pod templates, their node selection ([`workload::Selector`]) and index names;
//! - [`annotation`]: multus's network annotations;
//! - [`cniconf`]: a network configuration (one plugin or a chain) and the known plugin types;
//! - [`nodes`]: a node inventory (`kubectl get nodes -o json`); [`site`]: indices per machine of a site block;
//! - [`cluster`]: what the manifests say a cluster runs (which node gets which CNI configuration, flannel, NADs);
//! - [`topology`]: the lab's site and nodes;
//! - [`gen`]: the generated manifests, rendered.
//!
//! # Quick start
//!
//! ```
//! use netlab_model::manifest::{self, Source};
//!
//! let (objects, errors) = manifest::parse(&[Source::new("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")]);
//! assert!(errors.is_empty());
//! assert_eq!(objects[0].describe(), "Pod p");
//! let cluster = netlab_model::cluster::from_objects(&objects).unwrap();
//! assert!(cluster.workloads.is_empty());
//! ```

pub mod annotation;
pub mod cluster;
pub mod cniconf;
mod error;
pub mod facts;
pub mod gen;
pub mod manifest;
pub mod nodes;
pub mod site;
pub mod topology;
pub mod workload;

pub use error::Error;

//! index2ip: a CNI IPAM plugin that gives a pod a public address computed from its node's address block and an index.
//!
//! The node's block comes from its kernel command line (`epoxy.ipv4=ADDR/PLEN,GATEWAY,DNS1,DNS2`, optionally
//! `epoxy.ipv6=`); the index from the network config's `ipam.index`, or else from the pod's name. The arithmetic is
//! a pure function, [`allocate`]; [`Index2ip`] wires it to the CNI verbs.
//!
//! # Quick start
//!
//! ```
//! use index2ip::{allocate, capacity, Index, NodeKeys};
//!
//! let keys = NodeKeys::parse("epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4")?;
//! let index = Index::new(5).ok_or("not an index")?;
//! assert_eq!(allocate(&keys, index)?.v4.to_string(), "4.14.159.117/26");
//! assert_eq!(capacity(&keys), 14);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod alloc;
pub mod cli;
pub mod cmdline;
pub mod error;
pub mod index;
pub mod plugin;

pub use alloc::{allocate, capacity, AllocError, Allocation, Index, Reason};
pub use cmdline::{KeysError, NodeKeys};
pub use error::Error;
pub use plugin::{result, Index2ip};

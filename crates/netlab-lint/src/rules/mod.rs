//! The checks, by what they look at: NetworkAttachmentDefinitions (`nads`), multus's configuration (`multus`),
//! workloads and their annotations (`workloads`), the apply units (`apply`), a node inventory (`nodes`). Each adds
//! [`crate::Finding`]s of the rules it owns.

pub mod apply;
pub mod multus;
pub mod nads;
pub mod nodes;
pub mod workloads;

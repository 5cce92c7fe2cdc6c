//! The operator commands, one file per verb (`logs` also holds `show`).

pub(crate) mod diff;
pub(crate) mod enable;
pub(crate) mod install;
pub(crate) mod logs;
pub(crate) mod replay;
pub(crate) mod tree;

//! The operator commands, one file per verb (`logs` also holds `show`).

pub mod diff;
pub mod enable;
pub mod install;
pub mod logs;
pub mod replay;
pub mod tree;

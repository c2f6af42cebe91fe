//! Commands that run once and exit.

pub mod check;
pub mod status;

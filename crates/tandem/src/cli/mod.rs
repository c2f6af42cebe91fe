//! Commands that run once and exit.

pub mod admin;
pub mod check;
pub mod conflicts;
pub mod dead_letters;
pub mod status;
pub mod teardown;
pub mod verify;

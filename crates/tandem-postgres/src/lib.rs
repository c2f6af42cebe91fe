//! tandem's PostgreSQL endpoint.
//!
//! The source side reads the inventory database's change log through a logical replication
//! slot with the built-in `pgoutput` plugin:
//!
//! - [`types`]: PostgreSQL types in the canonical model, and the text format both read paths
//!   (snapshot and stream) decode with, so that the two cannot disagree;
//! - [`pgoutput`]: a zero-copy, panic-free decoder of the pgoutput protocol (version 1);
//! - [`replication`]: the streaming connection (`START_REPLICATION`, keepalives, acks);
//! - [`source`]: [`source::PgSource`], the pipeline's `Source` for PostgreSQL;
//! - [`snapshot`]: the consistent initial copy that streaming continues from.

pub mod admin;
pub mod catalog;
pub mod checks;
pub mod connect;
pub mod ddl;
pub mod pgoutput;
pub mod replication;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod types;
pub mod verify;

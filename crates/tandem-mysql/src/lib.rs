//! tandem's MySQL/MariaDB endpoint.
//!
//! Reading side: [`source`] tails the binlog over a replica dump connection and turns row
//! events into tandem's change model with the zero-copy decoder in [`binlog`];
//! [`snapshot`] copies tables inside a consistent snapshot and returns the exact binlog
//! position to stream from. [`types`] maps MySQL column types and values onto the
//! canonical model, identically for the snapshot (text protocol) and the stream (binlog).
//! Writing side: connection set-up, catalog, sink, checks and DDL helpers.

pub mod admin;
pub mod binlog;
pub mod catalog;
pub mod checks;
pub mod connect;
pub mod ddl;
pub mod flavor;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod types;
pub mod verify;

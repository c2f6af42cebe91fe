//! tandem's core: the canonical change model and the seams of a replication pipeline.
//!
//! Data flows `source → transport → mapper → applier → sink`, one pipeline per direction.
//! This crate owns everything those stages exchange and holds no database driver, so that
//! an endpoint crate (PostgreSQL, MySQL) or a transport (in-process channel, Kafka) can be
//! added or swapped without touching the others:
//!
//! - [`value`]: typed values and the canonical column types both databases map onto;
//! - [`convert`]: the type mapping — a value crosses to a target column exactly or not at all;
//! - [`position`]: source positions as a closed enum with a fallible comparison;
//! - [`change`]: rows, row changes with old and new images, transaction boundaries;
//! - [`source`], [`transport`], [`sink`]: the traits each stage implements;
//! - [`config`]: the TOML configuration, its validation and secrets.

pub mod apply;
pub mod change;
pub mod check;
pub mod config;
pub mod convert;
pub mod copy_progress;
pub mod error;
pub mod expr;
pub mod ledger;
pub mod mapper;
pub mod position;
pub mod resolve;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod transport;
pub mod value;
pub mod verify;
pub mod write_behind;

pub use change::{
    Cell, Change, ColumnSchema, OldRow, Row, RowChange, SourceEvent, TableId, TableSchema,
};
pub use error::ErrorClass;
pub use position::{GtidSet, Lsn, Position, PositionError};
pub use value::{ColumnType, Value};

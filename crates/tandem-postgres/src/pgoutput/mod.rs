//! The pgoutput logical replication protocol, version 1.
//!
//! Two layers, so each can be tested and fuzzed on its own:
//! - [`message`]: one wire message → borrowed structs, zero-copy, stateless;
//! - [`decoder`]: the session state (relation cache, known enums) that turns row messages
//!   into [`tandem_core::Change`]s with typed values.
//!
//! Invariant: no input makes either layer panic or allocate more than a small multiple of
//! the input's size; every malformed message is a typed error naming what was wrong. The
//! bytes come from the network, and a decoder that can be crashed by a corrupt frame would
//! take the daemon down with it (invariant 5). A proptest feeds random and mutated valid
//! messages to check this.
//!
//! Reference: <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>.

pub mod decoder;
pub mod message;

#[cfg(test)]
mod tests;

pub use decoder::{Decoded, Decoder};
pub use message::{parse, Message};

use crate::types::DecodeError;

/// A message that does not follow the pgoutput layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("pgoutput message ends inside the {what} (at byte {at})")]
    Truncated { what: &'static str, at: usize },
    #[error("pgoutput {what} is not UTF-8 (the server encoding must be UTF8)")]
    NotUtf8 { what: &'static str },
    #[error("pgoutput {what} has unexpected byte {byte:#04x}")]
    UnexpectedByte { what: &'static str, byte: u8 },
    #[error("unknown pgoutput message tag {tag:#04x} (only protocol version 1 is supported)")]
    UnknownTag { tag: u8 },
    #[error("pgoutput {what} is negative")]
    NegativeCount { what: &'static str },
    #[error("pgoutput message {tag:?} has {extra} bytes after its end")]
    TrailingBytes { tag: char, extra: usize },
}

/// A message that parsed but cannot be turned into a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecoderError {
    #[error("Malformed pgoutput message")]
    Parse(#[from] ParseError),
    #[error("pgoutput row for relation OID {oid} arrived before its Relation message")]
    UnknownRelation { oid: u32 },
    #[error("pgoutput row for {table} has {got} columns, its Relation message {expected}")]
    ColumnCount {
        table: String,
        expected: usize,
        got: usize,
    },
    #[error("Column {table}.{column} arrived in binary format, which tandem does not request")]
    BinaryValue { table: String, column: String },
    #[error("Column {table}.{column} holds text that is not UTF-8")]
    ValueNotUtf8 { table: String, column: String },
    #[error("Column {table}.{column} holds a value tandem cannot read")]
    Value {
        table: String,
        column: String,
        #[source]
        source: DecodeError,
    },
    #[error("pgoutput timestamp {micros} µs after 2000-01-01 is out of range")]
    BadTimestamp { micros: i64 },
}

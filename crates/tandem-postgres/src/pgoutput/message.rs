//! pgoutput messages as they are on the wire, borrowed from the buffer they arrived in.
//!
//! [`parse`] reads one message (the payload of one XLogData frame) without copying: names
//! and cell values are slices of the input. Every read is bounds-checked through [`Reader`],
//! so any input — truncated, corrupt, hostile — yields a [`ParseError`] and never a panic.
//! Layouts: <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>
//! (protocol version 1: no streamed in-progress transactions, no two-phase messages).

use super::ParseError;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
pub(crate) const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// A bounds-checked big-endian reader over one message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(ParseError::Truncated { what, at: self.pos })?;
        let slice = self
            .buf
            .get(self.pos..end)
            .ok_or(ParseError::Truncated { what, at: self.pos })?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ParseError> {
        let s = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, ParseError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn i16(&mut self, what: &'static str) -> Result<i16, ParseError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, ParseError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, ParseError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    /// A NUL-terminated UTF-8 string (the server encoding must be UTF8).
    fn cstr(&mut self, what: &'static str) -> Result<&'a str, ParseError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or(ParseError::Truncated { what, at: self.pos })?;
        let bytes = self.take(len, what)?;
        self.take(1, what)?;
        std::str::from_utf8(bytes).map_err(|_| ParseError::NotUtf8 { what })
    }

    fn finish(&self, tag: u8) -> Result<(), ParseError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(ParseError::TrailingBytes {
                tag: char::from(tag),
                extra: self.buf.len() - self.pos,
            })
        }
    }
}

/// `B`: a transaction starts. `final_lsn` is its commit record's LSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begin {
    pub final_lsn: u64,
    /// Microseconds since 2000-01-01 UTC.
    pub commit_time: i64,
    pub xid: u32,
}

/// `C`: the transaction committed; `end_lsn` is where the next one may start, the position
/// a slot is acknowledged with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub flags: u8,
    pub commit_lsn: u64,
    pub end_lsn: u64,
    pub commit_time: i64,
}

/// `O`: the transaction was replayed from another node through a replication origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    pub origin_lsn: u64,
    pub name: &'a str,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelationColumn<'a> {
    /// Bit 1: part of the replica identity key.
    pub flags: u8,
    pub name: &'a str,
    pub type_oid: u32,
    pub type_modifier: i32,
}

impl RelationColumn<'_> {
    pub fn is_key(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// `R`: the shape of a table, sent before its first row in a session and again whenever
/// it may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation<'a> {
    pub oid: u32,
    /// Empty for `pg_catalog`.
    pub namespace: &'a str,
    pub name: &'a str,
    /// `relreplident`: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn<'a>>,
}

/// `Y`: a user-defined type's name, sent before a Relation that uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeInfo<'a> {
    pub oid: u32,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// One cell of a [`Tuple`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TupleCell<'a> {
    /// `n`
    Null,
    /// `u`: a TOASTed value the change did not touch, so the server did not send it.
    Unchanged,
    /// `t`: the value in the type's text output format.
    Text(&'a [u8]),
    /// `b`: the value in the type's binary format (only with the `binary` option).
    Binary(&'a [u8]),
}

/// A row image (`TupleData`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tuple<'a> {
    pub cells: Vec<TupleCell<'a>>,
}

/// Which old image an update or delete carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKind {
    /// `K`: the replica identity key columns (others are `n`).
    Key,
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full,
}

/// `T`: tables emptied together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Bit 1 `CASCADE`, bit 2 `RESTART IDENTITY`.
    pub options: u8,
    pub relations: Vec<u32>,
}

/// `M`: a `pg_logical_emit_message` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogicalMessage<'a> {
    pub transactional: bool,
    pub lsn: u64,
    pub prefix: &'a str,
    pub content: &'a [u8],
}

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Begin(Begin),
    Commit(Commit),
    Origin(Origin<'a>),
    Relation(Relation<'a>),
    Type(TypeInfo<'a>),
    Insert {
        relation: u32,
        new: Tuple<'a>,
    },
    Update {
        relation: u32,
        old: Option<(OldKind, Tuple<'a>)>,
        new: Tuple<'a>,
    },
    Delete {
        relation: u32,
        old: (OldKind, Tuple<'a>),
    },
    Truncate(Truncate),
    Message(LogicalMessage<'a>),
}

/// Parse one message; the whole input must be consumed.
pub fn parse(buf: &[u8]) -> Result<Message<'_>, ParseError> {
    let mut r = Reader::new(buf);
    let tag = r.u8("message tag")?;
    let msg = match tag {
        b'B' => Message::Begin(Begin {
            final_lsn: r.u64("begin final LSN")?,
            commit_time: r.i64("begin commit time")?,
            xid: r.u32("begin xid")?,
        }),
        b'C' => Message::Commit(Commit {
            flags: r.u8("commit flags")?,
            commit_lsn: r.u64("commit LSN")?,
            end_lsn: r.u64("commit end LSN")?,
            commit_time: r.i64("commit time")?,
        }),
        b'O' => Message::Origin(Origin {
            origin_lsn: r.u64("origin LSN")?,
            name: r.cstr("origin name")?,
        }),
        b'R' => Message::Relation(relation(&mut r)?),
        b'Y' => Message::Type(TypeInfo {
            oid: r.u32("type oid")?,
            namespace: r.cstr("type namespace")?,
            name: r.cstr("type name")?,
        }),
        b'I' => {
            let relation = r.u32("insert relation")?;
            match r.u8("insert tuple kind")? {
                b'N' => Message::Insert {
                    relation,
                    new: tuple(&mut r)?,
                },
                other => {
                    return Err(ParseError::UnexpectedByte {
                        what: "insert tuple kind",
                        byte: other,
                    })
                }
            }
        }
        b'U' => {
            let relation = r.u32("update relation")?;
            let (old, new) = match r.u8("update tuple kind")? {
                b'N' => (None, tuple(&mut r)?),
                kind @ (b'K' | b'O') => {
                    let old = tuple(&mut r)?;
                    match r.u8("update new tuple kind")? {
                        b'N' => (Some((old_kind(kind), old)), tuple(&mut r)?),
                        other => {
                            return Err(ParseError::UnexpectedByte {
                                what: "update new tuple kind",
                                byte: other,
                            })
                        }
                    }
                }
                other => {
                    return Err(ParseError::UnexpectedByte {
                        what: "update tuple kind",
                        byte: other,
                    })
                }
            };
            Message::Update { relation, old, new }
        }
        b'D' => {
            let relation = r.u32("delete relation")?;
            match r.u8("delete tuple kind")? {
                kind @ (b'K' | b'O') => Message::Delete {
                    relation,
                    old: (old_kind(kind), tuple(&mut r)?),
                },
                other => {
                    return Err(ParseError::UnexpectedByte {
                        what: "delete tuple kind",
                        byte: other,
                    })
                }
            }
        }
        b'T' => {
            let n = r.u32("truncate relation count")?;
            let options = r.u8("truncate options")?;
            // Each OID takes 4 bytes: a count larger than the input allows is corrupt, and
            // checking first keeps a hostile count from reserving gigabytes.
            let n = usize::try_from(n).map_err(|_| ParseError::Truncated {
                what: "truncate relations",
                at: 0,
            })?;
            if n > buf.len() / 4 {
                return Err(ParseError::Truncated {
                    what: "truncate relations",
                    at: buf.len(),
                });
            }
            let relations = (0..n)
                .map(|_| r.u32("truncate relation"))
                .collect::<Result<_, _>>()?;
            Message::Truncate(Truncate { options, relations })
        }
        b'M' => {
            let flags = r.u8("message flags")?;
            let lsn = r.u64("message LSN")?;
            let prefix = r.cstr("message prefix")?;
            let len = r.u32("message length")?;
            let len = usize::try_from(len).map_err(|_| ParseError::Truncated {
                what: "message content",
                at: 0,
            })?;
            let content = r.take(len, "message content")?;
            Message::Message(LogicalMessage {
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content,
            })
        }
        other => return Err(ParseError::UnknownTag { tag: other }),
    };
    r.finish(tag)?;
    Ok(msg)
}

fn old_kind(byte: u8) -> OldKind {
    if byte == b'O' {
        OldKind::Full
    } else {
        OldKind::Key
    }
}

fn relation<'a>(r: &mut Reader<'a>) -> Result<Relation<'a>, ParseError> {
    let oid = r.u32("relation oid")?;
    let namespace = r.cstr("relation namespace")?;
    let name = r.cstr("relation name")?;
    let replica_identity = r.u8("relation replica identity")?;
    let n = r.i16("relation column count")?;
    let n = usize::try_from(n).map_err(|_| ParseError::NegativeCount {
        what: "relation columns",
    })?;
    // A column takes at least 10 bytes; cap the reservation by what the input can hold.
    let mut columns = Vec::with_capacity(n.min(r.buf.len() / 10));
    for _ in 0..n {
        columns.push(RelationColumn {
            flags: r.u8("column flags")?,
            name: r.cstr("column name")?,
            type_oid: r.u32("column type oid")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn tuple<'a>(r: &mut Reader<'a>) -> Result<Tuple<'a>, ParseError> {
    let n = r.i16("tuple column count")?;
    let n = usize::try_from(n).map_err(|_| ParseError::NegativeCount {
        what: "tuple columns",
    })?;
    let mut cells = Vec::with_capacity(n.min(r.buf.len()));
    for _ in 0..n {
        let cell = match r.u8("tuple cell kind")? {
            b'n' => TupleCell::Null,
            b'u' => TupleCell::Unchanged,
            kind @ (b't' | b'b') => {
                let len = r.i32("tuple cell length")?;
                let len = usize::try_from(len).map_err(|_| ParseError::NegativeCount {
                    what: "tuple cell length",
                })?;
                let data = r.take(len, "tuple cell value")?;
                if kind == b't' {
                    TupleCell::Text(data)
                } else {
                    TupleCell::Binary(data)
                }
            }
            other => {
                return Err(ParseError::UnexpectedByte {
                    what: "tuple cell kind",
                    byte: other,
                })
            }
        };
        cells.push(cell);
    }
    Ok(Tuple { cells })
}

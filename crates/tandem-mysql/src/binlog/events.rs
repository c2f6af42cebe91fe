//! The control events: transaction boundaries, positions and DDL.
//!
//! MariaDB opens every event group (transaction or DDL) with a GTID event; a group flagged
//! *standalone* is a single statement with no COMMIT/XID after it. A transaction ends with
//! an XID event (transactional engines) or a `COMMIT` query (others). GTID_LIST opens each
//! binlog file with the state at its start; BINLOG_CHECKPOINT and ANNOTATE_ROWS carry
//! nothing tandem needs.

use super::cursor::Cursor;
use super::{event_type, BinlogError};

/// MariaDB GTID event (162): the start of an event group `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariaGtid {
    pub seq: u64,
    pub domain: u32,
    pub flags: u8,
}

impl MariaGtid {
    /// The group is one statement without BEGIN/COMMIT (DDL, non-transactional writes).
    pub const FL_STANDALONE: u8 = 1;

    pub fn parse(data: &[u8]) -> Result<MariaGtid, BinlogError> {
        let mut c = Cursor::new(data);
        Ok(MariaGtid {
            seq: c.u64("GTID sequence number")?,
            domain: c.u32("GTID domain id")?,
            flags: c.u8("GTID flags")?,
        })
    }

    pub fn standalone(&self) -> bool {
        self.flags & Self::FL_STANDALONE != 0
    }
}

/// One `domain-server-seq` entry of a GTID_LIST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GtidEntry {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

/// MariaDB GTID_LIST event (163): the GTID state at the start of a binlog file.
pub fn parse_gtid_list(data: &[u8]) -> Result<Vec<GtidEntry>, BinlogError> {
    let mut c = Cursor::new(data);
    // The top four bits are flags.
    let count = c.u32("GTID list count")? & 0x0fff_ffff;
    let count =
        usize::try_from(count).map_err(|_| BinlogError::invalid("GTID list count", "too large"))?;
    if count.saturating_mul(16) > c.remaining() {
        return Err(BinlogError::Truncated {
            what: "GTID list",
            needed: count.saturating_mul(16),
            available: c.remaining(),
        });
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(GtidEntry {
            domain: c.u32("GTID list domain")?,
            server: c.u32("GTID list server")?,
            seq: c.u64("GTID list sequence")?,
        });
    }
    Ok(out)
}

/// MariaDB BINLOG_CHECKPOINT (161): the oldest binlog file still needed for crash recovery.
pub fn parse_binlog_checkpoint(data: &[u8]) -> Result<String, BinlogError> {
    let mut c = Cursor::new(data);
    let len = c.u32("checkpoint file name length")?;
    let len = usize::try_from(len)
        .map_err(|_| BinlogError::invalid("checkpoint file name", "too long"))?;
    let name = c.take(len, "checkpoint file name")?;
    file_name(name)
}

fn file_name(bytes: &[u8]) -> Result<String, BinlogError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| BinlogError::invalid("binlog file name", "not UTF-8"))
}

/// ROTATE (4): the next event is at `pos` in file `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotate {
    pub pos: u64,
    pub file: String,
}

impl Rotate {
    /// `checksum_in_body`: the first, artificial ROTATE of a dump arrives before the format
    /// description, so the framing cannot know to cut its checksum: the caller says.
    pub fn parse(data: &[u8], checksum_in_body: bool) -> Result<Rotate, BinlogError> {
        let mut c = Cursor::new(data);
        let pos = c.u64("rotate position")?;
        let mut name = c.rest();
        if checksum_in_body {
            let keep = name.len().checked_sub(4).ok_or(BinlogError::Truncated {
                what: "rotate checksum",
                needed: 4,
                available: name.len(),
            })?;
            name = name.get(..keep).unwrap_or_default();
        }
        Ok(Rotate {
            pos,
            file: file_name(name)?,
        })
    }
}

/// QUERY (2): a statement, `BEGIN`/`COMMIT` or DDL, in the default database `schema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    pub schema: &'a [u8],
    pub sql: &'a [u8],
}

/// What a query event means to a row-based reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Begin,
    Commit,
    Rollback,
    /// `SAVEPOINT`, `XA …` and similar: no effect on rows.
    Other,
    /// Anything else in a row-based binlog is DDL (or a statement the server chose to log
    /// as text): cached table schemas may be stale after it.
    Ddl,
}

impl<'a> Query<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Query<'a>, BinlogError> {
        let mut c = Cursor::new(data);
        c.skip(4, "query thread id")?;
        c.skip(4, "query execution time")?;
        let schema_len = usize::from(c.u8("query schema length")?);
        c.skip(2, "query error code")?;
        let status_len = usize::from(c.u16("query status length")?);
        c.skip(status_len, "query status variables")?;
        let schema = c.take(schema_len, "query schema")?;
        c.skip(1, "query schema terminator")?;
        Ok(Query {
            schema,
            sql: c.rest(),
        })
    }

    pub fn kind(&self) -> QueryKind {
        let text =
            String::from_utf8_lossy(self.sql.get(..self.sql.len().min(32)).unwrap_or_default());
        let first = text
            .trim_start()
            .split(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match first.as_str() {
            "BEGIN" => QueryKind::Begin,
            "COMMIT" => QueryKind::Commit,
            "ROLLBACK" => QueryKind::Rollback,
            "SAVEPOINT" | "XA" | "RELEASE" => QueryKind::Other,
            _ => QueryKind::Ddl,
        }
    }
}

/// XID (16): commit of a transaction of a transactional engine.
pub fn parse_xid(data: &[u8]) -> Result<u64, BinlogError> {
    Cursor::new(data).u64("xid")
}

/// Refuse events tandem can never decode, with what to do about them.
pub fn check_decodable(type_code: u8) -> Result<(), BinlogError> {
    match type_code {
        event_type::MARIADB_COMPRESSED_FIRST..=event_type::MARIADB_COMPRESSED_LAST => {
            Err(BinlogError::Compressed { type_code })
        }
        event_type::MARIADB_START_ENCRYPTION => Err(BinlogError::Encrypted),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_gtid_and_gtid_list_parse() {
        let mut data = 42u64.to_le_bytes().to_vec();
        data.extend(7u32.to_le_bytes());
        data.push(MariaGtid::FL_STANDALONE);
        let g = MariaGtid::parse(&data).unwrap();
        assert_eq!((g.seq, g.domain, g.standalone()), (42, 7, true));

        let mut list = (0x1000_0002u32).to_le_bytes().to_vec(); // flags in the top bits
        for (d, s, n) in [(0u32, 1u32, 10u64), (5, 2, 3)] {
            list.extend(d.to_le_bytes());
            list.extend(s.to_le_bytes());
            list.extend(n.to_le_bytes());
        }
        let l = parse_gtid_list(&list).unwrap();
        assert_eq!(
            l,
            vec![
                GtidEntry {
                    domain: 0,
                    server: 1,
                    seq: 10
                },
                GtidEntry {
                    domain: 5,
                    server: 2,
                    seq: 3
                }
            ]
        );
        list.truncate(20);
        assert!(parse_gtid_list(&list).is_err());
    }

    #[test]
    fn fake_rotate_loses_its_checksum() {
        let mut data = 4u64.to_le_bytes().to_vec();
        data.extend(b"binlog.000002");
        data.extend([0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(Rotate::parse(&data, true).unwrap().file, "binlog.000002");
        assert!(Rotate::parse(&data[..10], true).is_err());
    }

    #[test]
    fn compressed_events_are_refused_with_advice() {
        for t in 165..=171 {
            let e = check_decodable(t).unwrap_err();
            assert!(e.to_string().contains("log_bin_compress=OFF"), "{e}");
        }
        assert!(check_decodable(event_type::WRITE_ROWS_V1).is_ok());
    }

    #[test]
    fn query_kinds() {
        let mut data = vec![0u8; 8];
        data.push(2); // schema length
        data.extend([0, 0, 0, 0]); // error code, status length
        data.extend(b"db\0");
        let mut q = data.clone();
        q.extend(b"BEGIN");
        assert_eq!(Query::parse(&q).unwrap().kind(), QueryKind::Begin);
        let mut q = data.clone();
        q.extend(b"  alter table t add column x int");
        let parsed = Query::parse(&q).unwrap();
        assert_eq!(parsed.kind(), QueryKind::Ddl);
        assert_eq!(parsed.schema, b"db");
    }
}

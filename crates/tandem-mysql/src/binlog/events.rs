//! The control events: transaction boundaries, positions and DDL.
//!
//! MariaDB opens every event group (transaction or DDL) with a GTID event; a group flagged
//! *standalone* is a single statement with no COMMIT/XID after it. A transaction ends with
//! an XID event (transactional engines) or a `COMMIT` query (others). GTID_LIST opens each
//! binlog file with the state at its start; BINLOG_CHECKPOINT and ANNOTATE_ROWS carry
//! nothing tandem needs.
//!
//! MySQL opens every transaction with a GTID event (33; 34 when the transaction has no
//! GTID), followed by a `BEGIN` query for a transaction or directly by the statement for
//! DDL; PREVIOUS_GTIDS (35) opens each binlog file with the GTIDs of all earlier files.
//! Layouts: MySQL's `libbinlogevents/include/control_events.h` (`Gtid_event`,
//! `Previous_gtids_event`) and `Gtid_set::encode` for the set encoding.

use tandem_core::GtidSet;

use super::cursor::Cursor;
use super::{event_type, BinlogError};

/// MariaDB GTID event (162): the start of an event group `domain-server-seq`.
///
/// The flags byte also says whether the group is the first half of an XA transaction
/// ([`MariaGtid::FL_PREPARED_XA`]: `XA START … XA END; XA PREPARE`, rows included) or its
/// second half ([`MariaGtid::FL_COMPLETED_XA`]: `XA COMMIT`/`XA ROLLBACK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariaGtid {
    pub seq: u64,
    pub domain: u32,
    pub flags: u8,
    /// The XA transaction of an XA group (either flag set).
    pub xid: Option<Xid>,
}

impl MariaGtid {
    /// The group is one statement without BEGIN/COMMIT (DDL, non-transactional writes).
    pub const FL_STANDALONE: u8 = 1;
    /// The group ends in XA_PREPARE (its rows take effect only at a later `XA COMMIT`).
    pub const FL_PREPARED_XA: u8 = 64;
    /// The group is an `XA COMMIT` or `XA ROLLBACK` of a prepared transaction.
    pub const FL_COMPLETED_XA: u8 = 128;

    /// Group commit id follows the flags.
    const FL_GROUP_COMMIT_ID: u8 = 2;

    /// Body: seq (8), domain (4), flags (1), then the group commit id (8) if flagged, then
    /// for an XA group its xid: formatID (4), gtrid length (1), bqual length (1), bytes
    /// (MariaDB's `Gtid_log_event::write`).
    pub fn parse(data: &[u8]) -> Result<MariaGtid, BinlogError> {
        let mut c = Cursor::new(data);
        let seq = c.u64("GTID sequence number")?;
        let domain = c.u32("GTID domain id")?;
        let flags = c.u8("GTID flags")?;
        let mut xid = None;
        if flags & (Self::FL_PREPARED_XA | Self::FL_COMPLETED_XA) != 0 {
            if flags & Self::FL_GROUP_COMMIT_ID != 0 {
                c.skip(8, "GTID commit id")?;
            }
            let format_id = i64::from(i32::from_le_bytes(c.u32("XA formatID")?.to_le_bytes()));
            let gtrid_len = usize::from(c.u8("XA gtrid length")?);
            let bqual_len = usize::from(c.u8("XA bqual length")?);
            if gtrid_len > XID_PART_MAX || bqual_len > XID_PART_MAX {
                return Err(BinlogError::invalid(
                    "XA xid",
                    format!("gtrid {gtrid_len} / bqual {bqual_len} bytes, over {XID_PART_MAX}"),
                ));
            }
            xid = Some(Xid {
                format_id,
                gtrid: c.take(gtrid_len, "XA gtrid")?.to_vec(),
                bqual: c.take(bqual_len, "XA bqual")?.to_vec(),
            });
        }
        Ok(MariaGtid {
            seq,
            domain,
            flags,
            xid,
        })
    }

    pub fn standalone(&self) -> bool {
        self.flags & Self::FL_STANDALONE != 0
    }

    pub fn prepared_xa(&self) -> bool {
        self.flags & Self::FL_PREPARED_XA != 0
    }
}

/// An XA transaction id: `formatID`, global transaction id and branch qualifier (each
/// 0–64 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Xid {
    pub format_id: i64,
    pub gtrid: Vec<u8>,
    pub bqual: Vec<u8>,
}

/// Longest gtrid and bqual the XA standard (and both servers) allow.
const XID_PART_MAX: usize = 64;

impl std::fmt::Display for Xid {
    /// The form the server logs and `XA COMMIT` accepts: `X'6131',X'',1`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("X'")?;
        for b in &self.gtrid {
            write!(f, "{b:02x}")?;
        }
        f.write_str("',X'")?;
        for b in &self.bqual {
            write!(f, "{b:02x}")?;
        }
        write!(f, "',{}", self.format_id)
    }
}

impl Xid {
    /// Parse the server's logged form `X'hex',X'hex',formatID` at the start of `text`.
    pub fn parse_sql(text: &str) -> Result<Xid, BinlogError> {
        fn hex_part<'t>(
            text: &'t str,
            what: &'static str,
        ) -> Result<(Vec<u8>, &'t str), BinlogError> {
            let rest = text
                .strip_prefix("X'")
                .or_else(|| text.strip_prefix("x'"))
                .ok_or_else(|| BinlogError::invalid(what, "expected X'…'"))?;
            let end = rest
                .find('\'')
                .ok_or_else(|| BinlogError::invalid(what, "unterminated X'…'"))?;
            let hex = rest.get(..end).unwrap_or_default();
            if hex.len() % 2 != 0 || hex.len() > 2 * XID_PART_MAX {
                return Err(BinlogError::invalid(
                    what,
                    format!("bad length {}", hex.len()),
                ));
            }
            let mut out = Vec::with_capacity(hex.len() / 2);
            for pair in hex.as_bytes().chunks(2) {
                let digits = std::str::from_utf8(pair).unwrap_or_default();
                let b = u8::from_str_radix(digits, 16)
                    .map_err(|_| BinlogError::invalid(what, "not hexadecimal"))?;
                out.push(b);
            }
            Ok((out, rest.get(end + 1..).unwrap_or_default()))
        }
        let (gtrid, rest) = hex_part(text.trim_start(), "XA gtrid")?;
        let rest = rest
            .strip_prefix(',')
            .ok_or_else(|| BinlogError::invalid("XA xid", "expected ',' after gtrid"))?;
        let (bqual, rest) = hex_part(rest, "XA bqual")?;
        let rest = rest
            .strip_prefix(',')
            .ok_or_else(|| BinlogError::invalid("XA xid", "expected ',' after bqual"))?;
        let digits: &str = rest
            .split(|c: char| !(c.is_ascii_digit() || c == '-'))
            .next()
            .unwrap_or_default();
        let format_id = digits.parse::<i64>().map_err(|_| {
            BinlogError::invalid("XA formatID", format!("{digits:?} is not a number"))
        })?;
        Ok(Xid {
            format_id,
            gtrid,
            bqual,
        })
    }
}

/// XA_PREPARE (38): the end of the first half of an XA transaction (`XA PREPARE`), or,
/// on MySQL, of a whole one (`XA COMMIT … ONE PHASE`, `one_phase` set).
///
/// Body (MySQL's `XA_prepare_event`, MariaDB's `XA_prepare_log_event`): one_phase (1),
/// formatID (4), gtrid length (4), bqual length (4), then gtrid and bqual bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XaPrepare {
    pub one_phase: bool,
    pub xid: Xid,
}

impl XaPrepare {
    pub fn parse(data: &[u8]) -> Result<XaPrepare, BinlogError> {
        let mut c = Cursor::new(data);
        let one_phase = c.u8("XA one_phase")? != 0;
        // A signed 32-bit value on the wire.
        let format_id = i64::from(i32::from_le_bytes(c.u32("XA formatID")?.to_le_bytes()));
        let part_len = |c: &mut Cursor<'_>, what: &'static str| -> Result<usize, BinlogError> {
            let n = c.u32(what)?;
            usize::try_from(n)
                .ok()
                .filter(|&n| n <= XID_PART_MAX)
                .ok_or_else(|| BinlogError::invalid(what, format!("{n} is over {XID_PART_MAX}")))
        };
        let gtrid_len = part_len(&mut c, "XA gtrid length")?;
        let bqual_len = part_len(&mut c, "XA bqual length")?;
        let gtrid = c.take(gtrid_len, "XA gtrid")?.to_vec();
        let bqual = c.take(bqual_len, "XA bqual")?.to_vec();
        Ok(XaPrepare {
            one_phase,
            xid: Xid {
                format_id,
                gtrid,
                bqual,
            },
        })
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

/// MySQL GTID (33) or ANONYMOUS_GTID (34): the start of a transaction `uuid:gno`.
///
/// Body: flags (1 byte), source server UUID (16), GNO (8, little-endian), then the logical
/// clock (type byte, `last_committed`, `sequence_number`), commit timestamps, transaction
/// length and server versions, which tandem does not need (their presence varies by
/// version: 5.7.4, 8.0.1, 8.0.14 each added some).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MySqlGtid {
    pub flags: u8,
    pub uuid: [u8; 16],
    /// 0 in an anonymous GTID event.
    pub gno: u64,
}

impl MySqlGtid {
    /// Parse a GTID (33) or anonymous GTID (34) event body.
    pub fn parse(data: &[u8], anonymous: bool) -> Result<MySqlGtid, BinlogError> {
        let mut c = Cursor::new(data);
        let flags = c.u8("GTID flags")?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(c.take(16, "GTID server uuid")?);
        let gno = c.u64("GTID transaction number")?;
        // MySQL's GNOs run from 1 to 2^63 - 1.
        if !anonymous && (gno == 0 || gno > i64::MAX as u64) {
            return Err(BinlogError::invalid(
                "GTID transaction number",
                format!("{gno} is outside 1..2^63"),
            ));
        }
        Ok(MySqlGtid { flags, uuid, gno })
    }

    /// The UUID in MySQL's text form (lowercase, hyphenated), written into `buf`: no
    /// allocation per transaction.
    pub fn uuid_text<'b>(&self, buf: &'b mut [u8; 36]) -> &'b str {
        uuid::Uuid::from_bytes(self.uuid)
            .hyphenated()
            .encode_lower(buf)
    }
}

/// MySQL PREVIOUS_GTIDS (35): the GTID set of all earlier binlog files.
///
/// Body (`Gtid_set::encode`): a little-endian u64 whose top byte is the format (0:
/// untagged; 1: tagged, MySQL ≥ 8.3, refused) and whose low 56 bits count the UUIDs; per
/// UUID: 16 bytes, a u64 count of intervals, and each interval as two u64, start
/// inclusive and end exclusive.
pub fn parse_previous_gtids(data: &[u8]) -> Result<GtidSet, BinlogError> {
    let mut c = Cursor::new(data);
    let head = c.u64("previous GTIDs count")?;
    match head >> 56 {
        0 => {}
        1 => return Err(BinlogError::TaggedGtid),
        f => {
            return Err(BinlogError::invalid(
                "previous GTIDs format",
                format!("unknown format {f}"),
            ))
        }
    }
    let n_sids = head & 0x00ff_ffff_ffff_ffff;
    let fits = |count: u64, each: usize, c: &Cursor<'_>| {
        usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(each))
            .filter(|&need| need <= c.remaining())
            .is_some()
    };
    if !fits(n_sids, 24, &c) {
        return Err(BinlogError::invalid(
            "previous GTIDs count",
            format!("{n_sids} UUIDs do not fit in the event"),
        ));
    }
    let mut set = GtidSet::mysql();
    let mut buf = [0u8; 36];
    for _ in 0..n_sids {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(c.take(16, "previous GTIDs uuid")?);
        let uuid = uuid::Uuid::from_bytes(uuid)
            .hyphenated()
            .encode_lower(&mut buf);
        let n_intervals = c.u64("previous GTIDs interval count")?;
        if !fits(n_intervals, 16, &c) {
            return Err(BinlogError::invalid(
                "previous GTIDs interval count",
                format!("{n_intervals} intervals do not fit in the event"),
            ));
        }
        for _ in 0..n_intervals {
            let start = c.u64("previous GTIDs interval start")?;
            let end = c.u64("previous GTIDs interval end")?;
            let last = end.checked_sub(1).filter(|&l| start >= 1 && start <= l);
            let Some(last) = last else {
                return Err(BinlogError::invalid(
                    "previous GTIDs interval",
                    format!("[{start}, {end}) is empty or starts at 0"),
                ));
            };
            set.add_mysql_interval(uuid, start, last)
                .map_err(|e| BinlogError::invalid("previous GTIDs interval", e.to_string()))?;
        }
    }
    Ok(set)
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
    /// `XA START xid` (MySQL; MariaDB flags the GTID event instead): the group's rows are
    /// held until its XA_PREPARE.
    XaStart,
    /// `XA COMMIT xid`: a prepared transaction takes effect; ends its group.
    XaCommit,
    /// `XA ROLLBACK xid`: a prepared transaction is discarded; ends its group.
    XaRollback,
    /// `SAVEPOINT`, `XA END`, and similar: no effect on rows.
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
        let mut words = text
            .trim_start()
            .split(|c: char| !c.is_ascii_alphabetic())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_uppercase);
        let first = words.next().unwrap_or_default();
        match first.as_str() {
            "BEGIN" => QueryKind::Begin,
            "COMMIT" => QueryKind::Commit,
            "ROLLBACK" => QueryKind::Rollback,
            "XA" => match words.next().as_deref() {
                Some("START" | "BEGIN") => QueryKind::XaStart,
                Some("COMMIT") => QueryKind::XaCommit,
                Some("ROLLBACK") => QueryKind::XaRollback,
                _ => QueryKind::Other,
            },
            "SAVEPOINT" | "RELEASE" => QueryKind::Other,
            _ => QueryKind::Ddl,
        }
    }

    /// The xid of an `XA START|COMMIT|ROLLBACK` statement as the server logs it
    /// (`XA COMMIT X'6131',X'',1`).
    pub fn xid(&self) -> Result<Xid, BinlogError> {
        let text = std::str::from_utf8(self.sql)
            .map_err(|_| BinlogError::invalid("XA statement", "not UTF-8"))?
            .trim_start();
        // Skip `XA` and the verb.
        let mut rest = text;
        for _ in 0..2 {
            rest = rest.trim_start();
            let word_end = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            rest = rest.get(word_end..).unwrap_or_default();
        }
        Xid::parse_sql(rest)
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
        event_type::MYSQL_TRANSACTION_PAYLOAD => Err(BinlogError::CompressedTransaction),
        event_type::MYSQL_PARTIAL_UPDATE_ROWS => Err(BinlogError::PartialJson),
        event_type::MYSQL_GTID_TAGGED => Err(BinlogError::TaggedGtid),
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

    const UUID: [u8; 16] = [
        0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95,
        0x62,
    ];
    const UUID_TEXT: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    /// A MySQL 8.0 GTID event body as `Gtid_event::write_data_body` lays it out.
    fn mysql_gtid_body(gno: u64) -> Vec<u8> {
        let mut d = vec![0x01]; // flags: may have statement-based events
        d.extend(UUID);
        d.extend(gno.to_le_bytes());
        d.push(2); // logical timestamp type code
        d.extend(7u64.to_le_bytes()); // last_committed
        d.extend(8u64.to_le_bytes()); // sequence_number
                                      // immediate_commit_timestamp, 7 bytes, top bit clear: no original timestamp follows.
        d.extend(&1_700_000_000_000_000u64.to_le_bytes()[..7]);
        d.push(0xfc); // transaction length, packed: 0xfc + 2 bytes
        d.extend(300u16.to_le_bytes());
        d.extend(80036u32.to_le_bytes()); // immediate_server_version, top bit clear
        d
    }

    #[test]
    fn mysql_gtid_events_parse() {
        let g = MySqlGtid::parse(&mysql_gtid_body(42), false).unwrap();
        assert_eq!((g.flags, g.uuid, g.gno), (1, UUID, 42));
        let mut buf = [0u8; 36];
        assert_eq!(g.uuid_text(&mut buf), UUID_TEXT);
        // A 5.6 event stops after the GNO.
        assert_eq!(
            MySqlGtid::parse(&mysql_gtid_body(42)[..25], false)
                .unwrap()
                .gno,
            42
        );
        assert!(MySqlGtid::parse(&mysql_gtid_body(42)[..24], false).is_err());
        assert!(MySqlGtid::parse(&mysql_gtid_body(0), false).is_err());
        let mut anon = mysql_gtid_body(0);
        anon[1..17].fill(0);
        assert_eq!(MySqlGtid::parse(&anon, true).unwrap().gno, 0);
    }

    #[test]
    fn previous_gtids_parse_into_a_set() {
        let mut d = 2u64.to_le_bytes().to_vec();
        d.extend(UUID);
        d.extend(2u64.to_le_bytes());
        for (s, e) in [(1u64, 6u64), (7, 8)] {
            d.extend(s.to_le_bytes());
            d.extend(e.to_le_bytes());
        }
        let other = [0xb7u8; 16];
        d.extend(other);
        d.extend(1u64.to_le_bytes());
        d.extend(1u64.to_le_bytes());
        d.extend(4u64.to_le_bytes());
        let set = parse_previous_gtids(&d).unwrap();
        assert_eq!(
            set.to_string(),
            format!("{UUID_TEXT}:1-5:7,b7b7b7b7-b7b7-b7b7-b7b7-b7b7b7b7b7b7:1-3")
        );
        // Empty set (a server's first binlog).
        assert!(parse_previous_gtids(&0u64.to_le_bytes())
            .unwrap()
            .is_empty());
        // Truncated, counts beyond the event, empty intervals, tagged format.
        assert!(parse_previous_gtids(&d[..d.len() - 1]).is_err());
        assert!(parse_previous_gtids(&u64::MAX.to_le_bytes()[..7]).is_err());
        let mut huge = 1u64.to_le_bytes().to_vec();
        huge.extend(UUID);
        huge.extend(u64::MAX.to_le_bytes());
        assert!(parse_previous_gtids(&huge).is_err());
        let mut empty_iv = 1u64.to_le_bytes().to_vec();
        empty_iv.extend(UUID);
        empty_iv.extend(1u64.to_le_bytes());
        empty_iv.extend(5u64.to_le_bytes());
        empty_iv.extend(5u64.to_le_bytes());
        assert!(parse_previous_gtids(&empty_iv).is_err());
        let tagged = ((1u64 << 56) | (1 << 8) | 1).to_le_bytes();
        assert_eq!(parse_previous_gtids(&tagged), Err(BinlogError::TaggedGtid));
    }

    #[test]
    fn mysql_events_tandem_cannot_decode_are_refused_with_advice() {
        let e = check_decodable(event_type::MYSQL_TRANSACTION_PAYLOAD).unwrap_err();
        assert!(
            e.to_string()
                .contains("binlog_transaction_compression = OFF"),
            "{e}"
        );
        let e = check_decodable(event_type::MYSQL_PARTIAL_UPDATE_ROWS).unwrap_err();
        assert!(e.to_string().contains("binlog_row_value_options"), "{e}");
        assert!(check_decodable(event_type::MYSQL_GTID).is_ok());
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
    fn xa_prepare_and_xa_statements_parse_and_malformed_ones_are_typed_errors() {
        let mut d = vec![0u8]; // two-phase
        d.extend(7u32.to_le_bytes());
        d.extend(2u32.to_le_bytes());
        d.extend(1u32.to_le_bytes());
        d.extend(b"a1q");
        let p = XaPrepare::parse(&d).unwrap();
        assert!(!p.one_phase);
        assert_eq!(p.xid.to_string(), "X'6131',X'71',7");
        // Truncated data, oversized parts.
        assert!(matches!(
            XaPrepare::parse(&d[..d.len() - 1]),
            Err(BinlogError::Truncated { .. })
        ));
        let mut big = vec![1u8];
        big.extend(1u32.to_le_bytes());
        big.extend(65u32.to_le_bytes());
        big.extend(0u32.to_le_bytes());
        big.extend([0u8; 65]);
        assert!(matches!(
            XaPrepare::parse(&big),
            Err(BinlogError::Invalid { .. })
        ));

        let mut head = vec![0u8; 8];
        head.extend([0, 0, 0, 0, 0, 0]);
        let query = |sql: &str| {
            let mut q = head.clone();
            q.extend(sql.as_bytes());
            q
        };
        let q = query("XA COMMIT X'6131',X'71',7");
        let q = Query::parse(&q).unwrap();
        assert_eq!(q.kind(), QueryKind::XaCommit);
        assert_eq!(q.xid().unwrap(), p.xid);
        let q = query("XA ROLLBACK X'',X'',-1");
        let q = Query::parse(&q).unwrap();
        assert_eq!(q.kind(), QueryKind::XaRollback);
        assert_eq!(q.xid().unwrap().format_id, -1);
        let q = query("XA END X'6131',X'',1");
        assert_eq!(Query::parse(&q).unwrap().kind(), QueryKind::Other);
        for bad in [
            "XA COMMIT 'a1'",
            "XA COMMIT X'613',X'',1",
            "XA COMMIT X'6131',X'',",
            "XA COMMIT X'zz',X'',1",
            "XA COMMIT X'6131'",
            "XA ROLLBACK X'6131,X'',1",
        ] {
            let q = query(bad);
            let q = Query::parse(&q).unwrap();
            assert!(
                matches!(q.xid(), Err(BinlogError::Invalid { .. })),
                "{bad}: {:?}",
                q.xid()
            );
        }

        // MariaDB's GTID of a prepared XA group carries the xid.
        let mut g = 9u64.to_le_bytes().to_vec();
        g.extend(0u32.to_le_bytes());
        g.push(MariaGtid::FL_PREPARED_XA);
        g.extend(1u32.to_le_bytes());
        g.extend([2, 0]);
        g.extend(b"a1");
        let parsed = MariaGtid::parse(&g).unwrap();
        assert!(parsed.prepared_xa());
        assert_eq!(parsed.xid.unwrap().to_string(), "X'6131',X'',1");
        assert!(MariaGtid::parse(&g[..g.len() - 1]).is_err());
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
